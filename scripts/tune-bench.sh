#!/usr/bin/env bash
# What an encoder tuning buys on real footage, and what it costs in banding: the top rung of
# each clip (at its source's size, capped at the default ladder's rate for that size) encoded as a rung is
# (x264 at the ladder's preset, capped CRF, three B-frames, a keyframe every 4 s: the H.264
# arguments of crates/media/src/encode.rs) at CRF 19, 21, 23 and 25, untuned and with each
# tuning, then VMAF (vmaf_v0.6.1) and CAMBI (Netflix's banding index, which VMAF does not
# see) against the source. Reports the bytes each tuning needs for the untuned CRF 21's
# VMAF (log-bytes interpolated between CRFs) and its CAMBI there.
#
#   CLIPS="animation live-action" TUNES="animation film psnr" make tune-bench
#
# `psnr` is x264's tuning for metric testing (psychovisual optimisations and adaptive
# quantisation off): it is here to show what a metric rewards, not as a choice to make.
set -euo pipefail
dir=${BENCH_DIR:-bench-out}
here=$(dirname "$(realpath "$0")")
mapfile -t clips < <(bash "$here/footage.sh" "$dir")
BENCHLIB=$here python3 - "$dir" "${CLIPS:-animation live-action}" "${TUNES:-animation film psnr}" "${clips[@]}" <<'PY'
import math, os, subprocess, sys
sys.path.insert(0, os.environ["BENCHLIB"])
from benchlib import source_size, vmaf

workdir, only, tunes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
clips = [a.split("=", 1) for a in sys.argv[4:]]
crfs = [19, 21, 23, 25]

def encode(src, w, h, secs, tune, crf):
    out = os.path.join(workdir, "tune-%s-%s-%d.mp4" % (os.path.basename(src)[:-4], tune, crf))
    short = min(w, h)  # the default ladder's cap for the rung of that size
    cap = 5000 if short >= 1080 else 3000 if short >= 720 else 2000 if short >= 540 else 1100
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-nostdin", "-i", src, "-an", "-c:v", "libx264",
                    "-preset", "veryfast"] + ([] if tune == "none" else ["-tune", tune]) +
                   ["-crf", str(crf), "-maxrate", "%dk" % cap, "-bufsize", "%dk" % (2 * cap),
                    "-profile:v", "high", "-bf", "3", "-x264-params",
                    "keyint=infinite:scenecut=0:open-gop=0:b-pyramid=normal",
                    "-force_key_frames", "expr:gte(t,n_forced*4)", out], check=True)
    v, b = vmaf(out, src, w, h, banding=True)
    size = os.path.getsize(out)
    # Within a tenth of the cap the rate control, not the CRF, set the bytes.
    capped = size * 8 / secs / 1000 > 0.9 * cap
    return size, v, b, capped

def duration(src):
    return float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                                 "-of", "csv=p=0", src], capture_output=True, text=True,
                                check=True).stdout.strip())

def at_quality(points, target):
    """(bytes, CAMBI) where the curve through `points` (bytes, VMAF, CAMBI) reaches
    `target` VMAF, or None when it does not within the CRFs tried."""
    pts = sorted(points, key=lambda p: p[1])
    for (b1, v1, c1), (b2, v2, c2) in zip(pts, pts[1:]):
        if v1 <= target <= v2 and v2 > v1:
            t = (target - v1) / (v2 - v1)
            return math.exp(math.log(b1) + t * (math.log(b2) - math.log(b1))), c1 + t * (c2 - c1)
    return None

print("| clip | tuning | bytes at the untuned CRF 21's VMAF | CAMBI there (untuned) |")
print("|---|---|---|---|")
for name, src in clips:
    if name not in only:
        continue
    w, h = source_size(src)
    secs = duration(src)
    base = {c: encode(src, w, h, secs, "none", c) for c in crfs}
    bb, bv, bc, bcap = base[21]
    for tune in tunes:
        points = [encode(src, w, h, secs, tune, c) for c in crfs]
        r = at_quality([p[:3] for p in points], bv)
        if bcap or any(p[3] for p in points):
            print("| %s | %s | rate-capped: the cap, not the CRF, set the bytes | |" % (name, tune), flush=True)
        elif r:
            print("| %s | %s | %+.1f %% | %.2f (%.2f) |" % (name, tune, (r[0] / bb - 1) * 100, r[1], bc), flush=True)
        else:
            print("| %s | %s | not reached at CRF 19–25 | |" % (name, tune), flush=True)
PY
