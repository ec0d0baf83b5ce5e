#!/usr/bin/env bash
# Runs a real clip through `vodpipe run` and says how to watch the result.
set -euo pipefail
vodpipe=$1
out=$2
mkdir -p "$out"
src="$out/demo-source.mp4"
if [ ! -s "$src" ]; then
  echo "making a 30 s 1280x720 29.97 fps demo clip with stereo audio: $src"
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=1280x720:rate=30000/1001" \
    -f lavfi -i "sine=frequency=330:sample_rate=48000:beep_factor=4" \
    -f lavfi -i "sine=frequency=550:sample_rate=48000" \
    -filter_complex "[1][2]amerge=inputs=2[a]" -map 0:v -map "[a]" \
    -t 30 -c:v libx264 -preset veryfast -bf 3 -g 300 -c:a aac -b:a 160k "$src"
fi
"$vodpipe" run "$src" --out "$out"
master="$out/demo-source/master.m3u8"
mpd="$out/demo-source/manifest.mpd"
cat <<MSG

Published:
  HLS master: $master
  DASH MPD:   $mpd
Watch it, with the job's timeline, in the web console (hls.js and shaka, on localhost):
  $vodpipe serve --state $out        → open http://127.0.0.1:8080/
Or play the files directly:
  ffplay $master                       (or: mpv $master / vlc $master)
The job from the command line:
  $vodpipe jobs --state $out
MSG
