#!/usr/bin/env bash
# What a per-title ladder saves on real footage: publishes each clip with the fixed ladder
# and with `--ladder auto`, and reports every rung's video bytes and its quality as a viewer
# sees it (the rung scaled up to the source's size: VMAF, PSNR and SSIM against the
# source), the per-title analysis's cost, and, for each fixed rung, the cheapest per-title
# rung of at least its VMAF (the saving counts only if every fixed rung is matched) with the
# banding both show (CAMBI, which VMAF does not see: a saving bought with banding shows).
#
# Clips: the real footage of scripts/footage.sh (animation, live action, handheld, a talking
# head over a screen, a screen recording, and real animation under synthetic grain), then
# the synthetic clip (make bench's testsrc2), labelled as such. CLIPS="animation grain"
# picks some; CODECS="h264 hevc av1" adds the other codecs' ladders, each against the fixed
# H.264 ladder.
set -euo pipefail
vodpipe=$(realpath "$1")
dir=${BENCH_DIR:-bench-out}
here=$(dirname "$(realpath "$0")")
mapfile -t clips < <(bash "$here/footage.sh" "$dir")
clips+=("synthetic=$(bash "$here/bench-clip.sh" "$dir")")
BENCHLIB=$here python3 - "$vodpipe" "$dir" "${CLIPS:-}" "${CODECS:-h264}" "${clips[@]}" <<'PY'
import json, os, subprocess, sys, time
sys.path.insert(0, os.environ["BENCHLIB"])
from benchlib import concat, cpu, quality, source_size, vmaf

vodpipe, workdir, only, codecs = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
clips = [a.split("=", 1) for a in sys.argv[5:]]
clips = [c for c in clips if not only or c[0] in only]

def publish(name, src, ladder, codec):
    out = os.path.join(workdir, "ladder-%s-%s-%s" % (name, ladder, codec))
    subprocess.run(["rm", "-rf", out], check=True)
    extra = (["--ladder", "auto"] if ladder == "auto" else []) + ["--codecs", codec]
    c0, t0 = cpu(), time.monotonic()
    res = subprocess.run([vodpipe, "run", src, "--out", out, "--json"] + extra,
                         capture_output=True, text=True, check=True)
    wall, spent = time.monotonic() - t0, cpu() - c0
    job = json.loads(res.stdout.splitlines()[0])
    assert job["status"] == "PUBLISHED", job
    master = job["master"]
    listed = [l.strip() for l in open(master) if l.strip() and not l.startswith("#")]
    videos = [r for r in job["renditions"] if r["kind"] == "video"]
    # Quality as a viewer sees it full screen: every rung scaled up to the source's size
    # (a 1024x768 screen recording's top rung is 960x720).
    (sw, sh) = source_size(src)
    rows = []
    for r, rel in zip(videos, listed):
        f = concat(os.path.join(os.path.dirname(master), rel), os.path.join(out, r["id"] + ".mp4"))
        secs = job["duration_secs"]
        p, s = quality(f, src, sw, sh, upscale=True)
        v, b = vmaf(f, src, sw, sh, banding=True)
        rows.append(dict(name=r["id"], size="%dx%d" % (r["width"], r["height"]),
                         bytes=os.path.getsize(f), kbps=os.path.getsize(f) * 8 / secs / 1000,
                         psnr=p, ssim=s, vmaf=v, cambi=b))
    return rows, wall, spent, job["duration_secs"]

summary = []
for name, src in clips:
    print("\n## %s (%s)\n" % (name, os.path.basename(src)), flush=True)
    base, bw, bc, secs = publish(name, src, "fixed", "h264")
    for codec in codecs:
        fixed, fw, fc = (base, bw, bc) if codec == "h264" else publish(name, src, "fixed", codec)[:3]
        auto, aw, ac, _ = publish(name, src, "auto", codec)
        for label, rows, wall, spent in (("fixed " + codec, fixed, fw, fc), ("auto " + codec, auto, aw, ac)):
            print("\n%s ladder: %d video bytes, %.1f s wall, %.1f CPU s\n"
                  % (label, sum(r["bytes"] for r in rows), wall, spent))
            print("| rung | size | kb/s | VMAF | CAMBI | PSNR at source size | SSIM |")
            print("|---|---|---|---|---|---|---|")
            for r in rows:
                print("| %s | %s | %.0f | %.2f | %.2f | %.2f dB | %.4f |"
                      % (r["name"], r["size"], r["kbps"], r["vmaf"], r["cambi"], r["psnr"], r["ssim"]))
        # Every rung of the fixed H.264 ladder against the cheapest per-title rung of at
        # least its VMAF.
        print("\n| fixed H.264 rung | kb/s | VMAF | per-title %s rung of at least its VMAF | kb/s | VMAF | CAMBI (banding) | PSNR | SSIM |" % codec)
        print("|---|---|---|---|---|---|---|---|---|")
        matched = True
        for f in base:
            good = [a for a in auto if a["vmaf"] >= f["vmaf"]]
            a = min(good, key=lambda a: a["bytes"]) if good else None
            matched &= a is not None
            if a:
                print("| %s | %.0f | %.2f | %s | %.0f | %.2f | %.2f → %.2f | %+.2f dB | %+.4f |"
                      % (f["name"], f["kbps"], f["vmaf"], a["name"], a["kbps"], a["vmaf"],
                         f["cambi"], a["cambi"], a["psnr"] - f["psnr"], a["ssim"] - f["ssim"]))
            else:
                print("| %s | %.0f | %.2f | none | | | | | |" % (f["name"], f["kbps"], f["vmaf"]))
        fb, ab = sum(r["bytes"] for r in base), sum(r["bytes"] for r in auto)
        extra_cpu = (ac - fc) / (secs / 60.0)
        line = ("%s, per-title %s: video bytes %+.1f %% against the fixed H.264 ladder%s; "
                "per-title CPU %+.0f s per source minute"
                % (name, codec, (ab / fb - 1) * 100,
                   "" if matched else " (NOT every fixed rung matched)", extra_cpu))
        print("\n" + line, flush=True)
        summary.append(line)
print("\n## Summary\n")
for line in summary:
    print("- " + line)
PY
