#!/usr/bin/env bash
# The benchmark clip both benchmarks use (60 s of 1280x720 at 29.97 fps with a tone,
# keyframes every 250 frames), made once in DIR; prints its path.
set -euo pipefail
dir=${1:?usage: bench-clip.sh DIR}
mkdir -p "$dir"
src="$dir/bench-720p.mp4"
if [ ! -s "$src" ]; then
  echo "making a 60 s 1280x720 29.97 fps clip: $src" >&2
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1280x720:rate=30000/1001" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 60 \
    -c:v libx264 -preset veryfast -bf 3 -g 250 -c:a aac "$src"
fi
echo "$src"
