#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, then runs pytest
# (which also runs the UI's unit tests and the browser end-to-end tests).
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k server  # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v uv >/dev/null 2>&1; then
  log "installing uv"
  # Debian/Ubuntu's system pip refuses installs outside a venv (PEP 668): --user plus
  # --break-system-packages only adds uv to ~/.local.
  python3 -m pip install --quiet uv ||
    python3 -m pip install --quiet --user --break-system-packages uv
  export PATH="$HOME/.local/bin:$PATH"
fi

log "python environment (uv sync --frozen)"
uv sync --frozen

# The UI and its browser tests need bun and Debian's chromium (never a test tool's download).
apt_install() {
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
if ! command -v bun >/dev/null 2>&1; then
  command -v npm >/dev/null 2>&1 || { log "installing node + npm (apt)"; apt_install nodejs npm; }
  log "installing bun (npm)"
  npm install --global --silent bun
fi
if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium (apt)"
  apt_install chromium
fi
if [ -f ui/package.json ]; then
  log "UI dependencies and build"
  (cd ui && bun install --frozen-lockfile && bun run build)
fi

log "wheel smoke test (the built wheel alone, in a fresh venv)"
bash scripts/wheel_smoke.sh

log "tests"
# Missing UI tools must fail here rather than skip.
export MLX_ENTROPIX_REQUIRE_UI=1
uv run pytest "$@"

# Tests must leave the checkout as they found it (screenshots go to a temporary folder;
# scripts/take_screenshots.sh re-takes the README images on purpose). Checked in CI only, so a
# local run with work in progress still passes.
if [ -n "${CI:-}" ]; then
  log "clean checkout after the tests (git status --short)"
  dirty=$(git status --short)
  if [ -n "$dirty" ]; then
    printf '%s\n' "$dirty"
    echo "the tests left the files above changed or untracked" >&2
    exit 1
  fi
fi
