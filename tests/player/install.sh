#!/usr/bin/env bash
# Idempotent setup for the headless player check (tests/player/check.mjs):
#   - Debian's chromium at /usr/bin/chromium (apt; `apt-get update` only when needed)
#   - the pinned npm packages (npm ci) when node_modules is missing or stale.
# Never downloads a browser of its own (no `npx playwright install`): there is
# no network here but the package registries; check.mjs uses /usr/bin/chromium.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DEBIAN_FRONTEND=noninteractive
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

log() { printf 'tests/player/install.sh: %s\n' "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -E); else SUDO=(false); fi
fi

# --- chromium ---------------------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
  if [ "${SUDO[0]:-}" = false ]; then
    log "/usr/bin/chromium is missing and we are not root (no sudo): install Debian's 'chromium' package"
    exit 1
  fi
  # Refresh the package lists only if they do not know a chromium candidate yet.
  if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    log "apt-get update (no chromium candidate in the package lists)"
    "${SUDO[@]}" apt-get update -q
  fi
  log "apt-get install chromium"
  if ! "${SUDO[@]}" apt-get install -y -q chromium; then
    # Stale lists can point at versions the mirror no longer has: refresh once and retry.
    log "install failed; apt-get update and retry"
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q chromium
  fi
  [ -x /usr/bin/chromium ] || { log "chromium installed but /usr/bin/chromium is missing"; exit 1; }
fi

# --- npm packages -----------------------------------------------------------
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
  log "node and npm are required (Node.js >= 20)"
  exit 1
}
cd "$HERE"
stamp="node_modules/.vodpipe-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$want" != "$have" ] || [ ! -f node_modules/playwright-core/package.json ] \
   || [ ! -f node_modules/hls.js/package.json ] || [ ! -f node_modules/shaka-player/package.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  printf '%s\n' "$want" > "$stamp"
fi
log "ok ($(/usr/bin/chromium --version 2>/dev/null | head -n1), node $(node --version))"
