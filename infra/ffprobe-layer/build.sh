#!/usr/bin/env bash
# Builds the ingest function's probe: FFmpeg's ffprobe for Lambda's arm64 runtime
# (provided.al2023), linked statically against musl so it needs nothing from the host,
# from Debian bookworm's current ffmpeg source package, cross-compiled with `zig cc`.
#
#   build.sh OUT_DIR [aarch64|x86_64]
#
# OUT_DIR gets bin/ffprobe and share/doc/ffprobe/ (licence, source version, configure
# line): the layout of a Lambda layer, which Lambda mounts at /opt.
#
# What is built in, and why:
#   - demuxers: exactly vodpipe's allow-list (crates/media/src/policy.rs). Playlist and
#     script demuxers (hls, dash, concat, image2…) are not compiled in at all.
#   - every parser and decoder, so stream facts (pixel format, field order, frame rate)
#     match what the workers' ffmpeg sees; zlib for compressed MKV/MOV headers.
#   - protocols file, http and tcp: the function serves the source to ffprobe on
#     127.0.0.1 (crates/aws/src/loopback.rs), so ffprobe needs no TLS and no credentials.
#   - no asm (probing decodes a handful of frames), no GPL parts: the binary is LGPL 2.1+.
#
# Needs: a Debian-family host with apt (the source comes from deb.debian.org, verified by
# apt against the Debian archive keyring), Python 3 (zig comes from PyPI's `ziglang`),
# make. No root: apt runs on private state under the cache directory.
# The result is cached under $VODPIPE_BUILD_CACHE (default ~/.cache/vodpipe) by source
# version and this script's content, so repeated `sam build`s take a second.
set -euo pipefail

out=${1:?usage: build.sh OUT_DIR [aarch64|x86_64]}
arch=${2:-aarch64}
here=$(cd "$(dirname "$0")" && pwd)
cache=${VODPIPE_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vodpipe}/ffprobe
zig_version=0.17.1
jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p "$cache" "$out"
out=$(cd "$out" && pwd)
log() { printf '[ffprobe-layer] %s\n' "$*" >&2; }

case "$arch" in
  aarch64 | x86_64) ;;
  *) echo "unsupported architecture $arch (aarch64 or x86_64)" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- zig
if [ -n "${ZIG_PYTHON:-}" ] && "$ZIG_PYTHON" -m ziglang version 2>/dev/null | grep -qx "$zig_version"; then
  py=$ZIG_PYTHON
else
  py=$cache/venv/bin/python
  if ! "$py" -m ziglang version 2>/dev/null | grep -qx "$zig_version"; then
    log "installing zig $zig_version (PyPI ziglang) into $cache/venv"
    python3 -m venv "$cache/venv" ||
      { echo "python3 -m venv failed: apt install python3-venv (make layer-deps)" >&2; exit 1; }
    "$cache/venv/bin/pip" install -q "ziglang==$zig_version"
  fi
fi
tools=$cache/tools-$arch
mkdir -p "$tools"
for t in cc ar ranlib; do
  case $t in
    cc) cmd="cc -target $arch-linux-musl" ;;
    *) cmd=$t ;;
  esac
  printf '#!/bin/sh\nexec "%s" -m ziglang %s "$@"\n' "$py" "$cmd" >"$tools/zig-$t"
  chmod +x "$tools/zig-$t"
done

# ---------------------------------------------------------------- sources
apt_dir=$cache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
cat >"$apt_dir/debian.sources" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/debian.sources" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
  -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)")
command -v apt-get >/dev/null && command -v dpkg-source >/dev/null ||
  { echo "the ffprobe layer builds on a Debian-family host (apt-get and dpkg-source; apt install dpkg-dev)" >&2; exit 1; }
test -r /usr/share/keyrings/debian-archive-keyring.gpg ||
  { echo "missing /usr/share/keyrings/debian-archive-keyring.gpg (apt install debian-archive-keyring)" >&2; exit 1; }
# Every version of a source package in the index, newest first, by Debian's own ordering.
versions() {
  local sorted=() v i
  for v in $(apt-cache "${apt_opts[@]}" showsrc "$1" | awk '/^Version:/ {print $2}' | sort -u); do
    i=0
    while [ "$i" -lt "${#sorted[@]}" ] && dpkg --compare-versions "${sorted[$i]}" gt "$v"; do i=$((i + 1)); done
    sorted=("${sorted[@]:0:$i}" "$v" "${sorted[@]:$i}")
  done
  echo "${sorted[@]}"
}
# The newest version of a source package in the index.
newest() { versions "$1" | cut -d' ' -f1; }
# Downloads into $src the newest version of source package $1 that the mirror serves, and
# prints it: an index can name a version (a security update, say) whose files have not
# reached the mirror yet, and the build then takes the one before rather than failing.
fetch_source() {
  local v
  for v in $(versions "$1"); do
    if (cd "$src" && apt-get "${apt_opts[@]}" -qq source --download-only "$1=$v" >/dev/null 2>&1); then
      echo "$v"
      return 0
    fi
    log "$1 $v is in the index but not on the mirror; trying the version before it"
    rm -f "$src/$1"_*
  done
  echo "no version of the source package $1 could be downloaded" >&2
  return 1
}
log "reading bookworm's source index"
if apt-get "${apt_opts[@]}" -qq update; then
  ff_version=$(newest ffmpeg)
  zlib_version=$(newest zlib)
  key=$( (echo "$ff_version $zlib_version $arch $zig_version"; cat "$0") | sha256sum | cut -c1-16)
  built=$cache/built-$key
else
  # Offline: the newest build this script made for this architecture, if any.
  built=""
  for d in $(ls -dt "$cache"/built-* 2>/dev/null || true); do
    if grep -q "for $arch," "$d/share/doc/ffprobe/SOURCE" 2>/dev/null; then built=$d; break; fi
  done
  [ -n "$built" ] || { echo "cannot reach deb.debian.org and nothing is cached in $cache" >&2; exit 1; }
  log "offline: using the cached $built"
fi
if [ ! -x "$built/bin/ffprobe" ]; then
  src=$cache/src-$key
  rm -rf "$src" && mkdir -p "$src"
  ff_version=$(fetch_source ffmpeg)
  zlib_version=$(fetch_source zlib)
  (cd "$src" && dpkg-source -q -x ffmpeg_*.dsc ffmpeg >/dev/null && dpkg-source -q -x zlib_*.dsc zlib >/dev/null)
  deps=$src/deps

  log "zlib $zlib_version for $arch-linux-musl"
  (cd "$src/zlib" && CC="$tools/zig-cc" AR="$tools/zig-ar" RANLIB="$tools/zig-ranlib" CFLAGS=-O2 \
    ./configure --static --prefix="$deps" >/dev/null && make -s -j"$jobs" libz.a >/dev/null && make -s install >/dev/null)

  demuxers=mov,matroska,mpegts,avi,flv,mxf,mpegps,asf,ogg,ivf,wav,mp3,aac,flac
  log "configuring ffmpeg $ff_version for $arch-linux-musl"
  conf=(--enable-cross-compile --arch="$arch" --target-os=linux
    --cc=zig-cc --ar=zig-ar --ranlib=zig-ranlib --pkg-config=false
    --disable-everything --disable-autodetect --disable-asm --disable-debug --disable-doc
    --disable-stripping
    --disable-ffmpeg --disable-ffplay --enable-ffprobe
    --disable-avdevice --disable-avfilter --disable-postproc --disable-swscale
    --enable-static --disable-shared --enable-network --enable-zlib
    --enable-demuxer="$demuxers" --enable-parsers --enable-decoders
    --enable-protocol=file,http,tcp
    --extra-cflags="-I$deps/include" --extra-ldflags="-L$deps/lib -static -s"
    --extra-version=vodpipe-layer)
  export PATH="$tools:$PATH"
  (cd "$src/ffmpeg" && ./configure "${conf[@]}" >"$src/configure.log" 2>&1) ||
    { tail -n 40 "$src/ffmpeg/ffbuild/config.log" >&2; exit 1; }
  log "building ffprobe ($jobs jobs)"
  (cd "$src/ffmpeg" && make -s -j"$jobs" ffprobe >"$src/make.log" 2>&1) ||
    { tail -n 40 "$src/make.log" >&2; exit 1; }

  rm -rf "$built.tmp" && mkdir -p "$built.tmp/bin" "$built.tmp/share/doc/ffprobe"
  cp "$src/ffmpeg/ffprobe" "$built.tmp/bin/ffprobe"
  cp "$src/ffmpeg/COPYING.LGPLv2.1" "$src/ffmpeg/LICENSE.md" "$built.tmp/share/doc/ffprobe/"
  cp "$src/zlib/README" "$built.tmp/share/doc/ffprobe/zlib-README"
  {
    echo "ffprobe from FFmpeg $ff_version (Debian bookworm source package 'ffmpeg'), for $arch,"
    echo "statically linked with musl (zig $zig_version) and zlib $zlib_version (Debian 'zlib')."
    echo "Licence: LGPL 2.1 or later (COPYING.LGPLv2.1); zlib under the zlib licence."
    echo "Source: apt-get source ffmpeg=$ff_version zlib=$zlib_version (deb.debian.org)."
    echo "Configure line:"
    printf '  %q' "${conf[@]}"; echo
  } >"$built.tmp/share/doc/ffprobe/SOURCE"
  rm -rf "$built" && mv "$built.tmp" "$built"
  rm -rf "$src"
fi
rm -rf "$out/bin/ffprobe" "$out/share/doc/ffprobe"
mkdir -p "$out/bin" "$out/share/doc"
cp "$built/bin/ffprobe" "$out/bin/ffprobe"
cp -r "$built/share/doc/ffprobe" "$out/share/doc/ffprobe"
log "ffprobe $ff_version ($arch, $(du -h "$out/bin/ffprobe" | cut -f1)) in $out/bin"
