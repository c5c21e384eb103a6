"""Headless Chromium for page tests: Debian's ``chromium`` driven by ``playwright-core`` (npm).

Both are installed on first use when missing (``apt-get install chromium`` as root, and
``npm install playwright-core`` into a cache folder outside the repository), so the README's
test command needs nothing else on a fresh machine. A machine that can install neither fails
the test with what to install: a page test is never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
PLAYWRIGHT = "playwright-core@1.65.1"
CACHE = Path(os.environ.get("SWITCHYARD_TEST_NODE_CACHE", Path.home() / ".cache" / "switchyard-tests" / "node"))
ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], timeout: float) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed: {done.stderr[-2000:]}")


def ensure_browser() -> Path:
    """The node_modules folder holding playwright-core, with Chromium at ``CHROMIUM``."""
    if not Path(CHROMIUM).exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.fail(f"page tests need Debian's chromium at {CHROMIUM}: apt-get install chromium")
        _run(["apt-get", "update", "-qq"], 600)
        _run(["apt-get", "install", "-y", "-qq", "chromium"], 1200)
    modules = CACHE / "node_modules"
    if not (modules / "playwright-core" / "package.json").exists():
        if shutil.which("npm") is None:
            pytest.fail("page tests need node and npm (apt-get install nodejs npm)")
        CACHE.mkdir(parents=True, exist_ok=True)
        _run(["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", PLAYWRIGHT], 600)
    return modules


def drive(script: Path, args: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Run a node ``script`` (it prints one JSON object) with ``args`` as JSON in argv[2]."""
    modules = ensure_browser()
    done = subprocess.run(["node", str(script), json.dumps({**args, "chromium": CHROMIUM})],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NODE_PATH": str(modules)}, cwd=ROOT)
    if done.returncode != 0:
        pytest.fail(f"{script.name} failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
