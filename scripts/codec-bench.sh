#!/usr/bin/env bash
# What each codec costs and saves: publishes the benchmark clip (make bench's 60 s 720p)
# once per codec with `vodpipe run --codecs C`, and reports per codec the CPU seconds
# spent per output minute (every rung counts: 60 s into 5 rungs is 5 output minutes), the
# video bytes published, the bytes saved against H.264, and the mean PSNR of the rungs
# against the source scaled to each rung (so the savings are read at the quality they
# come with).
set -euo pipefail
vodpipe=$(realpath "$1")
shift
[ $# -gt 0 ] || set -- h264 hevc av1
codecs=("$@")
dir=${BENCH_DIR:-bench-out}
src=$(bash "$(dirname "$0")/bench-clip.sh" "$dir")
python3 - "$vodpipe" "$src" "$dir" "${codecs[@]}" <<'EOF'
import json, os, resource, subprocess, sys, time

vodpipe, src, workdir, codecs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime

def psnr(rendition, width, height):
    """Mean PSNR (dB) of every frame of `rendition` against the source scaled to its size."""
    graph = ("[0:v]setpts=PTS-STARTPTS[a];[1:v]scale=%d:%d:flags=bicubic,format=yuv420p,"
             "setpts=PTS-STARTPTS[b];[a][b]psnr" % (width, height))
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-i", rendition, "-i", src,
                          "-lavfi", graph, "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    line = [l for l in out.splitlines() if "PSNR" in l and "average:" in l][-1]
    return float(line.split("average:")[1].split()[0])

def concat(playlist, dest):
    """A rendition reassembled: its init segment, then every media segment."""
    base = os.path.dirname(playlist)
    parts = []
    for line in open(playlist):
        line = line.strip()
        if line.startswith("#EXT-X-MAP:URI="):
            parts.insert(0, line.split('"')[1])
        elif line and not line.startswith("#"):
            parts.append(line)
    with open(dest, "wb") as f:
        for p in parts:
            with open(os.path.join(base, p), "rb") as g:
                f.write(g.read())
    return dest

rows = []
for codec in codecs:
    out = os.path.join(workdir, "codec-" + codec)
    subprocess.run(["rm", "-rf", out], check=True)
    c0, t0 = cpu(), time.monotonic()
    res = subprocess.run([vodpipe, "run", src, "--out", out, "--json", "--codecs", codec],
                         capture_output=True, text=True, check=True)
    wall, spent = time.monotonic() - t0, cpu() - c0
    job = json.loads(res.stdout.splitlines()[0])
    assert job["status"] == "PUBLISHED", job
    videos = [r for r in job["renditions"] if r["kind"] == "video"]
    master = job["master"]
    listed = [l.strip() for l in open(master) if l.strip() and not l.startswith("#")]
    total_bytes, scores = 0, []
    for r, rel in zip(videos, listed):
        f = concat(os.path.join(os.path.dirname(master), rel), os.path.join(out, r["id"] + ".mp4"))
        total_bytes += os.path.getsize(f)
        scores.append(psnr(f, r["width"], r["height"]))
    minutes = job["duration_secs"] * len(videos) / 60.0
    rows.append((codec, wall, spent, spent / minutes, total_bytes, sum(scores) / len(scores),
                 ",".join(sorted({r["codec"].split(".")[0] for r in videos}))))
    print("%s: %.1f s wall, %.1f cpu-s, %d video bytes" % (codec, wall, spent, total_bytes), flush=True)

ref = next((r for r in rows if r[0] == "h264"), rows[0])
print()
print("| codec | wall | CPU s per output minute | video bytes | vs %s | mean PSNR |" % ref[0])
print("|---|---|---|---|---|---|")
for codec, wall, spent, per_min, b, db, fam in rows:
    print("| %s (%s) | %.1f s | %.1f | %d | %+.1f %% | %.2f dB |"
          % (codec, fam, wall, per_min, b, (b / ref[4] - 1) * 100, db))
EOF
