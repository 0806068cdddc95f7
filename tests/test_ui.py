"""The browser UI's own tests, run from pytest: `bun test` (unit/component) and the e2e suite.

The e2e suite (ui/e2e/run.ts) builds the UI, starts the real server on a free loopback port
and drives Debian's headless Chromium. Its screenshots go to a temporary folder, so the
checkout stays clean; `scripts/take_screenshots.sh` re-takes the README images on purpose.
Both need bun and /usr/bin/chromium; without them these tests skip, unless
MLX_ENTROPIX_REQUIRE_UI=1 (CI), where a missing tool is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UI = ROOT / "ui"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
REQUIRED = os.environ.get("MLX_ENTROPIX_REQUIRE_UI") == "1"


def _need(ok: bool, what: str) -> None:
    if ok:
        return
    if REQUIRED:
        pytest.fail(f"MLX_ENTROPIX_REQUIRE_UI=1 but {what}")
    pytest.skip(what)


def _bun() -> str:
    bun = shutil.which("bun")
    _need(bun is not None, "bun is not installed (npm install -g bun)")
    assert bun
    if not (UI / "node_modules").is_dir():
        # Reproducible install from the committed lockfile (registry access needed once).
        subprocess.run([bun, "install", "--frozen-lockfile"], cwd=UI, check=True, timeout=600)
    return bun


def _run(cmd: list[str], timeout: int) -> None:
    proc = subprocess.run(
        cmd, cwd=UI, capture_output=True, text=True, timeout=timeout, env={**os.environ, "CI": "1"}
    )
    out = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}"


@pytest.mark.timeout(300)
def test_ui_unit():
    _run([_bun(), "test", "./src"], timeout=280)


@pytest.mark.timeout(900)
def test_ui_e2e():
    bun = _bun()
    _need(CHROMIUM.exists(), f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    _need(shutil.which("uv") is not None, "uv is not installed (the e2e starts the server)")
    _run([bun, "run", "test:e2e"], timeout=880)
