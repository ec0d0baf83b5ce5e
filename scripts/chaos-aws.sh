#!/usr/bin/env bash
# The deployed shape on the emulator, twice with the same uploads: once on a perfect AWS,
# once on AWS as it fails (responses lost after the request was applied, throttling and
# transaction conflicts on every service), IAM enforced from the template both times, a
# Spot task reclaimed mid-item, every S3 event delivered twice, and an older upload of one
# key held back until the newer one has published. Prints what each run saw side by side.
#
#   scripts/chaos-aws.sh BIN_DIR OUT [FAULT_RULE...]
#
# With no rule: lost=0.05,throttle=0.05 everywhere and conflict=0.05 on transactions.
set -euo pipefail
bin=$1
out=$2
shift 2
rules=("$@")
if [ ${#rules[@]} -eq 0 ]; then
  rules=("dynamodb:TransactWriteItems@lost=0.05,throttle=0.05,conflict=0.05,latency-ms=0-20"
         "lost=0.05,throttle=0.05,latency-ms=0-20")
fi
mkdir -p "$out"
media="$out/media"
mkdir -p "$media"
if [ ! -s "$media/talk.mp4" ]; then
  echo "making the uploads in $media"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=640x360:rate=30000/1001" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 24 \
    -c:v libx264 -preset veryfast -g 60 -c:a aac -shortest "$media/clip.mp4"
  printf '1\n00:00:01,000 --> 00:00:02,500\nHello\n\n2\n00:00:10,000 --> 00:00:13,000\nAcross a join\n' > "$media/en.srt"
  printf '1\n00:00:03,000 --> 00:00:04,500\nHola\n' > "$media/talk.es.srt"
  ffmpeg -hide_banner -loglevel error -y -i "$media/clip.mp4" -i "$media/en.srt" -map 0 -map 1 \
    -c copy -c:s mov_text -metadata:s:s:0 language=eng "$media/talk.mp4"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc=size=320x180:rate=25" \
    -f lavfi -i "sine=frequency=330:sample_rate=48000" -t 8 \
    -c:v libx264 -preset veryfast -c:a aac -shortest "$media/older.mp4"
fi
run() {
  local name=$1
  shift
  echo "== $name"
  "$bin/vodpipe-emulator" e2e --input "$media/talk.mp4" --key uploads/talk.mp4 \
    --sidecar "$media/talk.es.srt" --older "$media/older.mp4" \
    --also premium/launch.mp4 --also archive/old.mp4 \
    --interrupt --duplicate-events --chunk-seconds 4 --workers 3 \
    --out "$out/$name" --name "chaos-$name" --timeout-secs 900 "$@" > "$out/$name.json"
}
run perfect
fault_args=()
for r in "${rules[@]}"; do fault_args+=(--fault "$r"); done
run failing "${fault_args[@]}" --fault-seed 9
python3 - "$out/perfect.json" "$out/failing.json" <<'PY'
import json, sys

runs = [json.load(open(p)) for p in sys.argv[1:]]
names = ["perfect AWS", "AWS as it fails"]
emus = [r["emulator"] for r in runs]

def jobs(e):
    return e["jobs"]

print()
print("| | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
def row(label, f):
    print(f"| {label} | " + " | ".join(str(f(r, e)) for r, e in zip(runs, emus)) + " |")
row("uploads published (exactly once)", lambda r, e: "%d of %d" % (
    sum(1 for j in jobs(e) if j["status"] == "PUBLISHED" and j["stitch_count"] == 1), len(jobs(e))))
row("pointer serves the newer upload", lambda r, e: e["pointer_job"] == r["job_id"])
row("subtitle languages of the captioned upload", lambda r, e: ", ".join(r["subtitles"]))
row("IAM: calls checked / refused", lambda r, e: "%d / %d" % (e["iam"]["checked"], len(e["iam"]["denials"])))
def faults(e, service):
    f = e["faults"]["by_service"].get(service, {})
    return ", ".join("%s %d" % (k, v) for k, v in sorted(f.items())) or "-"
for s in ["dynamodb", "s3", "sqs", "ecs", "events", "cloudfront"]:
    row("faults injected: " + s, lambda r, e, s=s: faults(e, s))
row("attempts (items)", lambda r, e: "%d (%d)" % (
    sum(j["attempts"] for j in jobs(e)), sum(j["chunks_total"] for j in jobs(e))))
row("interruptions / failed attempts", lambda r, e: "%d / %d" % (
    sum(j["interruptions"] for j in jobs(e)), sum(j["failures"] for j in jobs(e))))
row("ingest invocations (errors)", lambda r, e: "%d (%d)" % (
    e["functions"]["ingest"]["invocations"], e["functions"]["ingest"]["errors"]))
row("worker tasks started", lambda r, e: e["fargate"]["started"])
row("work left on any queue", lambda r, e: e["queued_after"])
row("newest upload: upload to PUBLISHED (s)", lambda r, e: r["timings"]["total_secs"])
row("whole run (s)", lambda r, e: e["wall_secs"])
ok = all(j["status"] == "PUBLISHED" and j["stitch_count"] == 1 for e in emus for j in jobs(e))
ok = ok and all(e["pointer_job"] == r["job_id"] and not e["iam"]["denials"] and e["queued_after"] == 0
                for r, e in zip(runs, emus))
sys.exit(0 if ok else 1)
PY
