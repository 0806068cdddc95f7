#!/usr/bin/env bash
# Re-take the README's UI images (images/ui_*.png) on purpose: builds the UI and runs the
# browser suite (ui/e2e/run.ts) with its screenshots going to images/ instead of a temporary
# folder. The entropix and compare images come from the real embedded model; ui_fork.png from
# a mocked fork stream. Look at them before committing.
#   bash scripts/take_screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
(cd ui && bun run build && E2E_SCREENSHOTS="$ROOT/images" bun e2e/run.ts)
git status --short -- images/
