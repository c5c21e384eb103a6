"""``--engine`` on ``switchyard up`` and ``switchyard upstream`` (and its environment variable):
the embedded upstream runs the engine asked for and says which, and why, in its start-up log.

Real subprocesses on 127.0.0.1 port 0, stopped by the test; bounded waits.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator

import pytest
from process_lines import first_match

from switchyard.proxy.embedded.engines import ENV, edge_available

pytestmark = pytest.mark.embedded_only

ENGINE_LINE = re.compile(r"embedded upstream ready .* engine: (\w+) engine \(([^)]*)\)")
BOUND = 60.0


def _engine_of(argv: list[str], env: dict[str, str]) -> tuple[str, str]:
    """Start ``switchyard <argv>``, wait for the engine line on stderr, stop; (engine, source)."""
    with first_match([sys.executable, "-m", "switchyard.proxy", *argv], ENGINE_LINE, stream="stderr",
                     env={**os.environ, **env}, bound=BOUND) as m:
        assert m is not None, f"no engine line from switchyard {' '.join(argv)}"
        return m[1], m[2]


UP = ["up", "--memory", "--rest-port", "0", "--grpc-port", "0"]
UPSTREAM = ["upstream", "--memory", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"]


@pytest.fixture
def no_env() -> Iterator[dict[str, str]]:
    saved = os.environ.pop(ENV, None)
    try:
        yield {}
    finally:
        if saved is not None:
            os.environ[ENV] = saved


@pytest.mark.parametrize("argv", [UP, UPSTREAM], ids=["up", "upstream"])
def test_flag_selects_the_local_engine(argv: list[str], no_env: dict[str, str]) -> None:
    assert _engine_of([*argv, "--engine", "local"], no_env) == ("local", f"--engine/{ENV}")


def test_environment_selects_the_engine(no_env: dict[str, str]) -> None:
    assert _engine_of(UP, {ENV: "local"}) == ("local", f"--engine/{ENV}")


@pytest.mark.skipif(not edge_available(), reason="qdrant-edge-py is not installed here")
def test_default_is_edge_where_installed(no_env: dict[str, str]) -> None:
    assert _engine_of(UP, no_env) == ("edge", "default")
