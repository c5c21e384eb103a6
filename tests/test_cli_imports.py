"""The quick CLI: building the ``switchyard`` parser (``--help``, ``migrate status``,
``migrate list``) imports none of the client and engine stack. Each command module registers a
deferred handler (proxy/command_loading.py) and keeps heavy imports inside the work it does;
``bench/cli.py`` measures the CPU time this saves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("qdrant_client", "grpc", "numpy", "aiohttp", "onnxruntime", "tokenizers", "pydantic")

PROBE = r"""
import contextlib, io, json, sys
from switchyard.proxy.cli import build_parser
argv = sys.argv[1:]
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    build_parser().parse_args(argv)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


@pytest.mark.parametrize("argv", [["--help"], ["migrate", "status", "m1"], ["migrate", "list"]])
def test_parser_imports_no_heavy_module(argv: list[str]) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert "switchyard" in loaded  # the probe really built our parser
    assert not loaded & set(HEAVY), f"`switchyard {' '.join(argv)}` imports {sorted(loaded & set(HEAVY))}"


def test_every_command_still_registers() -> None:
    from switchyard.proxy.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    assert {"upstream", "proxy", "up", "models", "bind", "unbind", "embed", "migrate", "backfill",
            "verify", "demo", "doctor"} <= set(commands)
