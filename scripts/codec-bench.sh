#!/usr/bin/env bash
# What each codec costs and saves: publishes each clip once per codec with `vodpipe run
# --codecs C`, and reports per codec the CPU seconds spent per output minute (every rung
# counts: 60 s into 5 rungs is 5 output minutes), the video bytes published, the bytes
# saved against H.264, and the mean quality of the rungs (VMAF with each rung scaled up
# to the source's size, as a player shows it; PSNR against the source scaled to each
# rung), so the savings are read at the quality they come with.
#
# Clips: the real animation and live action of scripts/footage.sh, and the synthetic clip
# (make bench's 60 s testsrc2), labelled as such. CLIPS="animation" picks some.
set -euo pipefail
vodpipe=$(realpath "$1")
shift
[ $# -gt 0 ] || set -- h264 hevc av1
dir=${BENCH_DIR:-bench-out}
here=$(dirname "$(realpath "$0")")
mapfile -t clips < <(bash "$here/footage.sh" "$dir" | grep -E '^(animation|live-action)=')
clips+=("synthetic=$(bash "$here/bench-clip.sh" "$dir")")
BENCHLIB=$here python3 - "$vodpipe" "$dir" "${CLIPS:-}" "$*" "${clips[@]}" <<'PY'
import json, os, subprocess, sys, time
sys.path.insert(0, os.environ["BENCHLIB"])
from benchlib import concat, cpu, quality, source_size, vmaf

vodpipe, workdir, only, codecs = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
clips = [a.split("=", 1) for a in sys.argv[5:]]
clips = [c for c in clips if not only or c[0] in only]

for name, src in clips:
    rows = []
    for codec in codecs:
        out = os.path.join(workdir, "codec-%s-%s" % (name, codec))
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
        (sw, sh) = source_size(src)
        total_bytes, psnrs, vmafs = 0, [], []
        for r, rel in zip(videos, listed):
            f = concat(os.path.join(os.path.dirname(master), rel), os.path.join(out, r["id"] + ".mp4"))
            total_bytes += os.path.getsize(f)
            psnrs.append(quality(f, src, r["width"], r["height"])[0])
            vmafs.append(vmaf(f, src, sw, sh))
        minutes = job["duration_secs"] * len(videos) / 60.0
        rows.append((codec, wall, spent, spent / minutes, total_bytes, sum(psnrs) / len(psnrs),
                     sum(vmafs) / len(vmafs), ",".join(sorted({r["codec"].split(".")[0] for r in videos}))))
        print("%s %s: %.1f s wall, %.1f cpu-s, %d video bytes" % (name, codec, wall, spent, total_bytes), flush=True)
    ref = next((r for r in rows if r[0] == "h264"), rows[0])
    print("\n## %s (%s)\n" % (name, os.path.basename(src)))
    print("| codec | wall | CPU s per output minute | video bytes | vs %s | mean VMAF | mean PSNR |" % ref[0])
    print("|---|---|---|---|---|---|---|")
    for codec, wall, spent, per_min, b, db, vm, fam in rows:
        print("| %s (%s) | %.1f s | %.1f | %d | %+.1f %% | %.2f | %.2f dB |"
              % (codec, fam, wall, per_min, b, (b / ref[4] - 1) * 100, vm, db))
PY
