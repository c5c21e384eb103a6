"""The code base type-checks: mypy over ``switchyard.proxy`` and ``switchyard.backfill``
(settings in pyproject.toml).

The folders ``proxy/`` and ``backfill/`` install as ``switchyard.proxy`` and
``switchyard.backfill`` (setup.py), a mapping mypy cannot read from an editable install; the test
lays the same names out with symlinks so every ``switchyard.*`` import resolves to the source
(an import mypy could not resolve would silently become ``Any``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_is_clean(tmp_path: Path) -> None:
    tree = tmp_path / "tree" / "switchyard"
    tree.mkdir(parents=True)
    for folder in ("proxy", "backfill"):
        (tree / folder).symlink_to(ROOT / folder, target_is_directory=True)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "mypy"), "--namespace-packages", "--explicit-package-bases",
         "-p", "switchyard.proxy", "-p", "switchyard.backfill"],
        cwd=tmp_path / "tree", capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found in" in result.stdout and " 0 source files" not in result.stdout, result.stdout
