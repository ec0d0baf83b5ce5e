#!/usr/bin/env bash
# What probing a feature-length MP4 costs: a 2-hour 1080p file (a 10 s clip looped with
# `-c copy`, so it is cheap to make) probed by `vodpipe plan`, which reads the frame table
# from the sample tables in `moov`, against ffprobe's packet scan of the same file (what
# probing did before, and still does for containers without an index). Prints bytes read,
# reads and seconds for each.
set -euo pipefail
vodpipe=$(realpath "$1")
dir=${PROBE_BENCH_DIR:-bench-out}
hours=${PROBE_BENCH_HOURS:-2}
mkdir -p "$dir"
clip="$dir/probe-clip-1080p.mp4"
long="$dir/probe-${hours}h-1080p.mp4"
if [ ! -s "$long" ]; then
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1920x1080:rate=25" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 10 \
    -c:v libx264 -preset ultrafast -crf 40 -g 50 -c:a aac -b:a 32k "$clip"
  n=$((hours * 360))
  for _ in $(seq "$n"); do echo "file '$(realpath "$clip")'"; done >"$dir/probe-list.txt"
  ffmpeg -hide_banner -loglevel error -y -f concat -safe 0 -i "$dir/probe-list.txt" -c copy "$long"
fi
size=$(stat -c %s "$long")
echo "source: $long ($((size / 1048576)) MiB, ${hours} h 1080p25)"
start=$(date +%s.%N)
log=$(VODPIPE_LOG=vodpipe_control=info,vodpipe_media=info "$vodpipe" plan "$long" --json 2>&1 >/dev/null | grep "frame table read" || true)
end=$(date +%s.%N)
echo "vodpipe plan (sample tables): $(python3 -c "print(f'{$end - $start:.2f}')") s; $log" | sed 's/\x1b\[[0-9;]*m//g'
start=$(date +%s.%N)
frames=$(ffprobe -v error -select_streams 0 -show_entries packet=pts,dts -of csv=p=0 "$long" | wc -l)
end=$(date +%s.%N)
echo "ffprobe packet scan: $(python3 -c "print(f'{$end - $start:.2f}')") s, $frames packets, reads all $size bytes"
