#!/usr/bin/env bash
# The Fargate worker image, built without Docker:
#
#   scripts/worker-image.sh [--arch arm64|amd64] [--binary FILE] [--name IMAGE]
#                           [--push REPOSITORY_URI] [--tag TAG]
#
# 1. the worker binary: FILE, or cross-compiled here with cargo-lambda's zig (arm64,
#    release; never compiled under QEMU);
# 2. a Debian bookworm root file system with Debian's ffmpeg and CA certificates, built
#    by mmdebstrap (foreign architectures run their maintainer scripts under
#    qemu-user-static), then pruned to what the binaries load: every package that owns a
#    library in the dynamic-link closure of ffmpeg, ffprobe and the worker stays, with
#    Debian's required packages; the rest (Mesa's GPU drivers and LLVM, Perl, apt, fonts,
#    documentation) goes, and the closure is checked again afterwards;
# 3. an OCI image committed from scratch by buildah (vfs storage, no daemon): non-root
#    user 10001, exec-form entrypoint so SIGTERM (a Spot interruption) reaches the
#    worker, /tmp/vodpipe as the scratch volume;
# 4. with --push: pushed to the ECR repository (zstd-compressed layers, which Fargate
#    pulls faster), as TAG (default: the commit) and `latest`.
#
# Prints the image name and its sizes. Needs root or user namespaces (mmdebstrap),
# buildah, mmdebstrap, and for a foreign --arch qemu-user-static registered with
# binfmt_misc (done here when running as root). VODPIPE_BUILDAH_ROOT selects buildah's
# storage directory (default: buildah's own).
set -euo pipefail

arch=arm64
binary=""
name=""
push=""
tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --push) push=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[worker-image] %s\n' "$*" >&2; }
case "$arch" in
  arm64) triple=aarch64 ;;
  amd64) triple=x86_64 ;;
  *) echo "--arch is arm64 or amd64" >&2; exit 2 ;;
esac
host_arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
[ -n "$tag" ] || tag=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || date +%Y%m%d%H%M%S)
[ -n "$name" ] || name=localhost/vodpipe-worker:$tag-$arch
for tool in mmdebstrap buildah zstd; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: make image-deps (apt install $tool)" >&2; exit 1; }
done
storage=(--storage-driver vfs)
[ -z "${VODPIPE_BUILDAH_ROOT:-}" ] || storage+=(--root "$VODPIPE_BUILDAH_ROOT/root" --runroot "$VODPIPE_BUILDAH_ROOT/run")
work=$(mktemp -d "${TMPDIR:-/tmp}/vodpipe-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------- 1. the binary
if [ -z "$binary" ]; then
  if [ "$arch" = arm64 ]; then
    log "cross-compiling worker-task for arm64 (cargo-lambda, zig)"
    (cd "$root" && PATH="$root/.venv/bin:$PATH" cargo lambda build --release --arm64 --bin worker-task >&2)
    binary=$root/target/lambda/worker-task/bootstrap
  elif [ "$arch" = "$host_arch" ]; then
    (cd "$root" && cargo build --release -p worker-task >&2)
    binary=$root/target/release/worker-task
  else
    echo "no cross build for $arch here; pass --binary" >&2; exit 2
  fi
fi
test -x "$binary" || { echo "$binary is not an executable" >&2; exit 1; }
mkdir -p "$work/bin"
cp "$binary" "$work/bin/worker-task"

# ---------------------------------------------------------------- foreign architectures
if [ "$arch" != "$host_arch" ]; then
  reg=/proc/sys/fs/binfmt_misc/qemu-$triple
  if [ ! -e "$reg" ]; then
    [ "$(id -u)" = 0 ] || { echo "register qemu-$triple with binfmt_misc first (as root: make image-deps)" >&2; exit 1; }
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    conf=/usr/lib/binfmt.d/qemu-$triple.conf
    test -r "$conf" || { echo "$conf is missing: apt install qemu-user-static" >&2; exit 1; }
    cat "$conf" >/proc/sys/fs/binfmt_misc/register
  fi
fi

# ---------------------------------------------------------------- 2. the root file system
cat >"$work/prune.sh" <<'EOF'
#!/bin/sh
# Runs inside the new root: keeps the packages that own the libraries ffmpeg, ffprobe
# and the worker load (and Debian's required set), purges the rest.
set -eu
bins="/usr/bin/ffmpeg /usr/bin/ffprobe /usr/local/bin/worker-task"
owners() {
  for b in $bins; do ldd "$b"; done | awk '/=>/ {print $3}' | sort -u | while read -r lib; do
    dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib"
  done | cut -d: -f1 | sort -u
}
# The base system: essential, required and protected packages and what they depend on.
base=$(dpkg-query -W -f='${Package} ${Essential} ${Priority} ${Protected}\n' |
  awk '$2 == "yes" || $3 == "required" || $4 == "yes" {print $1}')
# shellcheck disable=SC2086
deps=$(apt-cache depends --recurse --installed --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances $base | grep -v -e '^ ' -e '^<')
keep=" $(printf '%s\n' $(owners) $deps ffmpeg ca-certificates | sort -u | tr '\n' ' ') "
installed_mb() { dpkg-query -W -f='${Installed-Size}\n' | awk '{s += $1} END {printf "%d", s / 1024}'; }
before=$(installed_mb)
purge=""
for p in $(dpkg-query -W -f='${Package}\n'); do
  case "$keep" in *" $p "*) ;; *) purge="$purge $p" ;; esac
done
last=""
for p in $purge; do case $p in debconf) last=debconf ;; *) first="${first:-} $p" ;; esac; done
# Dependencies of purged packages on each other are broken on purpose (that is the
# point); dpkg's complaints about them go to a log, shown only if dpkg fails.
# shellcheck disable=SC2086
[ -z "${first:-}" ] || dpkg --purge --force-depends $first >/tmp/purge.log 2>&1 || { cat /tmp/purge.log; exit 1; }
[ -z "$last" ] || dpkg --purge --force-depends --force-remove-essential $last >>/tmp/purge.log 2>&1 || { cat /tmp/purge.log; exit 1; }
rm -f /tmp/purge.log
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/* /var/log/* /usr/share/doc/* /usr/share/man/*
for b in $bins; do
  if ldd "$b" | grep -q "not found"; then echo "prune broke $b:"; ldd "$b" | grep "not found"; exit 1; fi
done
echo "[worker-image] kept $(dpkg-query -W | wc -l) packages, purged $(echo $purge | wc -w): $(installed_mb) MB of the $before MB ffmpeg and its dependencies install (dpkg's sizes)"
EOF
if [ "$(id -u)" = 0 ]; then mode=root; else mode=unshare; fi
log "building a bookworm $arch root file system with ffmpeg ($mode mode)"
started=$(date +%s)
mmdebstrap --quiet --mode="$mode" --variant=apt --arch="$arch" \
  --include=ffmpeg,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="copy-in $work/bin/worker-task /usr/local/bin" \
  --customize-hook="copy-in $work/prune.sh /tmp" \
  --customize-hook='chroot "$1" sh /tmp/prune.sh && rm -f "$1/tmp/prune.sh"' \
  --customize-hook='chroot "$1" useradd --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vodpipe' \
  --customize-hook='mkdir -p "$1/tmp/vodpipe" && chown 10001 "$1/tmp/vodpipe"' \
  bookworm "$work/rootfs.tar" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" >&2
log "root file system in $(($(date +%s) - started)) s"

# ---------------------------------------------------------------- 3. the image
ctr=$(buildah "${storage[@]}" from scratch)
trap 'buildah "${storage[@]}" rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
buildah "${storage[@]}" add "$ctr" "$work/rootfs.tar" / >/dev/null
buildah "${storage[@]}" config --arch "$arch" --os linux --user 10001 \
  --entrypoint '["/usr/local/bin/worker-task"]' --cmd '' \
  --env VODPIPE_SCRATCH=/tmp/vodpipe --volume /tmp/vodpipe \
  --label org.opencontainers.image.title=vodpipe-worker \
  --label org.opencontainers.image.revision="$tag" "$ctr"
buildah "${storage[@]}" commit --quiet --format oci "$ctr" "$name" >/dev/null
tar_mb=$(($(stat -c %s "$work/rootfs.tar") / 1024 / 1024))
zstd_mb=$(($(zstd -q -3 -c "$work/rootfs.tar" | wc -c) / 1024 / 1024))
log "image $name: $tar_mb MB unpacked, $zstd_mb MB as the zstd layer Fargate pulls"

# ---------------------------------------------------------------- 4. push
if [ -n "$push" ]; then
  registry=${push%%/*}
  region=$(echo "$registry" | cut -d. -f4)
  command -v aws >/dev/null || { echo "the AWS CLI is needed to log in to ECR" >&2; exit 1; }
  # The token goes through a pipe into an auth file of this run's own, never onto a
  # command line (where ps would show it).
  auth=$work/auth.json
  aws ecr get-login-password --region "$region" |
    buildah login --authfile "$auth" --username AWS --password-stdin "$registry" >&2
  for t in "$tag" latest; do
    log "pushing $push:$t"
    buildah "${storage[@]}" push --quiet --authfile "$auth" --compression-format zstd \
      "$name" "docker://$push:$t" >&2
  done
fi
echo "$name"
