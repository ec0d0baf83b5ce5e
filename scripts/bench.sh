#!/usr/bin/env bash
# Times `vodpipe run` against one plain ffmpeg command that produces the same ladder with
# the same encoder settings (one decode split to every rung, keyframes every segment,
# fragmented MP4 out, AAC audio once), on a ~60 s 720p clip. Runs alternate so both see
# the same machine state; the median ratio is printed last.
set -euo pipefail
vodpipe=$(realpath "$1")
shift
# Anything after the binary goes to `vodpipe run` (e.g. --workers 2).
vodpipe_args=("$@")
runs=${BENCH_RUNS:-3}
dir=${BENCH_DIR:-bench-out}
src=$(bash "$(dirname "$0")/bench-clip.sh" "$dir")
# The ladder vodpipe will use, as ffmpeg filter and encoder arguments.
mapfile -t plan < <("$vodpipe" plan "$src" --json | python3 -c '
import json, sys
p = json.load(sys.stdin)
rungs = p["rungs"]
n = len(rungs)
graph = "[0:v]split=%d%s" % (n, "".join("[s%d]" % i for i in range(n)))
for i, r in enumerate(rungs):
    graph += ";[s%d]scale=%d:%d:flags=bicubic,setsar=1,format=yuv420p[v%d]" % (i, r["width"], r["height"], i)
print(graph)
for i, r in enumerate(rungs):
    print("%d %s %d" % (i, r["name"], r["max_kbps"]))
')
graph=${plan[0]}
base=(ffmpeg -hide_banner -nostdin -loglevel error -y -i "$src" -filter_complex "$graph")
for line in "${plan[@]:1}"; do
  read -r i name kbps <<<"$line"
  base+=(-map "[v$i]" -c:v libx264 -preset veryfast -crf 21 -maxrate "${kbps}k" -bufsize "$((kbps * 2))k"
         -profile:v high -bf 3 -x264-params keyint=infinite:scenecut=0:open-gop=0:b-pyramid=normal
         -force_key_frames "expr:gte(t,n_forced*4)" -f mp4
         -movflags +frag_keyframe+empty_moov+default_base_moof+skip_trailer "$dir/ffmpeg-$name.mp4")
done
base+=(-map 0:a:0 -c:a aac -b:a 128k -ac 2 -ar 48000 -f mp4
       -movflags +empty_moov+default_base_moof+skip_trailer -frag_duration 4000000 "$dir/ffmpeg-audio.mp4")
echo "baseline: ${base[*]}"
echo "vodpipe:  $vodpipe run $src --out $dir/vodpipe ${vodpipe_args[*]}"
# Runs a command; prints its wall time and the CPU time (user + system) of everything it
# started, in seconds.
time_it() {
  python3 -c 'import resource, subprocess, sys, time
t = time.monotonic()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f %.3f" % (time.monotonic() - t, r.ru_utime + r.ru_stime))' "$@"
}
ratios=()
for r in $(seq 1 "$runs"); do
  read -r t_ff c_ff < <(time_it "${base[@]}")
  rm -rf "$dir/vodpipe"
  read -r t_vp c_vp < <(time_it "$vodpipe" run "$src" --out "$dir/vodpipe" --json "${vodpipe_args[@]}")
  ratio=$(awk -v a="$t_vp" -v b="$t_ff" 'BEGIN {printf "%.4f", a / b}')
  ratios+=("$ratio")
  printf 'run %d: ffmpeg %.2f s (cpu %.1f s)  vodpipe %.2f s (cpu %.1f s)  ratio %.3f\n' \
    "$r" "$t_ff" "$c_ff" "$t_vp" "$c_vp" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
printf 'ratio vodpipe/ffmpeg: %.2f\n' "$median"
