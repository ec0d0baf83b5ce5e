#!/usr/bin/env bash
# What a per-title ladder saves: publishes each clip with the fixed ladder and with
# `--ladder auto`, and reports every rung's video bytes and its quality as a viewer sees
# it (the rung scaled to the source's size, PSNR and SSIM against the source), the
# per-title analysis (every probe point, the frontier it chose from, its CPU time), and,
# for each fixed rung, the cheapest per-title rung of at least its PSNR and SSIM.
#
# Clips: "animation" is make bench's clip (60 s of 1280x720 testsrc2: flat colours, sharp
# edges, smooth motion, like the tests' clips); "grain" is 20 s of the same picture under
# strong temporal noise (film grain: the hard case, where the caps bind).
set -euo pipefail
vodpipe=$(realpath "$1")
dir=${BENCH_DIR:-bench-out}
anim=$(bash "$(dirname "$0")/bench-clip.sh" "$dir")
grain="$dir/grain-720p.mp4"
if [ ! -s "$grain" ]; then
  echo "making a 20 s 1280x720 clip with film grain: $grain" >&2
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1280x720:rate=30000/1001" \
    -vf "noise=alls=16:allf=t+u" -t 20 -c:v libx264 -preset veryfast -crf 12 "$grain"
fi
BENCHLIB=$(dirname "$(realpath "$0")") python3 - "$vodpipe" "$dir" "animation=$anim" "grain=$grain" <<'PY'
import json, os, subprocess, sys, time
sys.path.insert(0, os.environ["BENCHLIB"])
from benchlib import concat, cpu, quality

vodpipe, workdir, clips = sys.argv[1], sys.argv[2], [a.split("=", 1) for a in sys.argv[3:]]

def publish(name, src, ladder):
    out = os.path.join(workdir, "ladder-%s-%s" % (name, ladder))
    subprocess.run(["rm", "-rf", out], check=True)
    extra = ["--ladder", "auto"] if ladder == "auto" else []
    c0, t0 = cpu(), time.monotonic()
    res = subprocess.run([vodpipe, "run", src, "--out", out, "--json"] + extra,
                         capture_output=True, text=True, check=True)
    wall, spent = time.monotonic() - t0, cpu() - c0
    job = json.loads(res.stdout.splitlines()[0])
    assert job["status"] == "PUBLISHED", job
    master = job["master"]
    listed = [l.strip() for l in open(master) if l.strip() and not l.startswith("#")]
    videos = [r for r in job["renditions"] if r["kind"] == "video"]
    (sw, sh) = (videos[0]["width"], videos[0]["height"])
    rows = []
    for r, rel in zip(videos, listed):
        f = concat(os.path.join(os.path.dirname(master), rel), os.path.join(out, r["id"] + ".mp4"))
        secs = job["duration_secs"]
        p, s = quality(f, src, sw, sh, upscale=True)
        rows.append(dict(name=r["id"], size="%dx%d" % (r["width"], r["height"]),
                         bytes=os.path.getsize(f), kbps=os.path.getsize(f) * 8 / secs / 1000,
                         psnr=p, ssim=s))
    return rows, wall, spent

for name, src in clips:
    print("\n## %s (%s)\n" % (name, os.path.basename(src)), flush=True)
    plan = subprocess.run([vodpipe, "plan", src, "--ladder", "auto"], capture_output=True,
                          text=True, check=True).stdout
    print("```")
    print("\n".join(l for l in plan.splitlines() if not l.startswith("  chunk")))
    print("```")
    fixed, fw, fc = publish(name, src, "fixed")
    auto, aw, ac = publish(name, src, "auto")
    for label, rows, wall, spent in (("fixed", fixed, fw, fc), ("auto", auto, aw, ac)):
        print("\n%s ladder: %d video bytes, %.1f s wall, %.1f CPU s\n"
              % (label, sum(r["bytes"] for r in rows), wall, spent))
        print("| rung | size | kb/s | PSNR at source size | SSIM |")
        print("|---|---|---|---|---|")
        for r in rows:
            print("| %s | %s | %.0f | %.2f dB | %.4f |" % (r["name"], r["size"], r["kbps"], r["psnr"], r["ssim"]))
    print("\n| fixed rung | kb/s | PSNR | SSIM | per-title rung of at least its quality | kb/s | PSNR | SSIM | bytes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in fixed:
        good = [a for a in auto if a["psnr"] >= f["psnr"] and a["ssim"] >= f["ssim"]]
        a = min(good, key=lambda a: a["bytes"]) if good else None
        if a:
            print("| %s | %.0f | %.2f | %.4f | %s | %.0f | %.2f | %.4f | %+.1f %% |"
                  % (f["name"], f["kbps"], f["psnr"], f["ssim"], a["name"], a["kbps"], a["psnr"],
                     a["ssim"], (a["bytes"] / f["bytes"] - 1) * 100))
        else:
            print("| %s | %.0f | %.2f | %.4f | none | | | | |" % (f["name"], f["kbps"], f["psnr"], f["ssim"]))
    fb, ab = sum(r["bytes"] for r in fixed), sum(r["bytes"] for r in auto)
    print("\n%s: per-title video bytes %+.1f %% against the fixed ladder; CPU %+.1f %%"
          % (name, (ab / fb - 1) * 100, (ac / fc - 1) * 100), flush=True)
PY
