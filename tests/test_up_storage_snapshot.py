"""``switchyard up --storage-snapshot FILE [--force-snapshot]``: the same options as
``switchyard upstream`` (one definition, :func:`embedded.command.add_storage_snapshot_arguments`),
and a real ``up`` process serves the snapshot's collections and aliases through the proxy; with
collections in ``--path`` already it exits 2 with the reason unless forced.

Real subprocesses on 127.0.0.1 port 0, stopped by the test; bounded waits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from qdrant_client import QdrantClient, models

from process_lines import first_match
from test_embedded_full_snapshots import _aliases, _make_full_snapshot
from test_embedded_snapshots import _state

from switchyard.proxy.embedded.server import BackgroundUpstream

pytestmark = pytest.mark.embedded_only

READY = re.compile(r"switchyard proxy ready rest=(\S+):(\d+) grpc=(\S+):(\d+)")
BOUND = 90.0
UP = [sys.executable, "-m", "switchyard.proxy", "up", "--rest-port", "0", "--grpc-port", "0",
      "--drain-seconds", "1"]
ENV_NAMES = ("SWITCHYARD_UPSTREAM_STORAGE_SNAPSHOT", "SWITCHYARD_UPSTREAM_FORCE_SNAPSHOT")


def _help(command: str) -> str:
    done = subprocess.run([sys.executable, "-m", "switchyard.proxy", command, "--help"],
                          capture_output=True, text=True, timeout=BOUND,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def _option_lines(text: str) -> list[str]:
    """The help entries of the two options, each joined into one line."""
    entries: list[list[str]] = []
    for line in text.splitlines():
        if re.match(r"^  -", line):
            entries.append([])
        if entries and line.strip():
            entries[-1].append(line.strip())
    joined = [" ".join(e) for e in entries]
    return [e for e in joined if e.startswith(("--storage-snapshot FILE", "--force-snapshot"))]


def test_up_help_shows_the_upstream_snapshot_options() -> None:
    up, upstream = _option_lines(_help("up")), _option_lines(_help("upstream"))
    assert len(up) == 2 and "SWITCHYARD_UPSTREAM_STORAGE_SNAPSHOT" in up[0]
    assert "SWITCHYARD_UPSTREAM_FORCE_SNAPSHOT" in up[1]
    assert up == upstream  # one definition, the same words


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return {**env, **extra}


@contextmanager
def _up(*flags: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A real ``switchyard up`` until the block ends; yields the proxy's REST URL."""
    with first_match([*UP, *flags], READY, env=env if env is not None else _clean_env(), bound=BOUND) as m:
        assert m is not None, "switchyard up never got ready"
        yield f"http://{m[1]}:{m[2]}"


def test_up_recovers_a_storage_snapshot(tmp_path) -> None:
    file, state = _make_full_snapshot(tmp_path)
    with _up("--memory", "--storage-snapshot", file) as url:
        client = QdrantClient(url=url, check_compatibility=False, timeout=60)
        try:
            assert {n: _state(client, n) for n in state} == state
            aliases = _aliases(client)
            assert aliases["current"] == aliases["latest"] == "docs"
            assert client.count("current", exact=True).count == 30
        finally:
            client.close()


def test_up_refuses_to_overwrite_unless_forced(tmp_path) -> None:
    file, state = _make_full_snapshot(tmp_path)
    data = tmp_path / "data"
    server = BackgroundUpstream(str(data))
    server.start()
    try:
        client = QdrantClient(url=server.rest_url, check_compatibility=False)
        client.create_collection("plain", vectors_config=models.VectorParams(
            size=2, distance=models.Distance.DOT))
        client.close()
    finally:
        server.stop()
    # the environment variable instead of the flag
    done = subprocess.run([*UP, "--path", str(data)], capture_output=True, text=True,
                          timeout=BOUND, env=_clean_env(SWITCHYARD_UPSTREAM_STORAGE_SNAPSHOT=file))
    assert done.returncode == 2, done.stderr
    assert "collection 'plain' already exists" in done.stderr
    with _up("--path", str(data), "--storage-snapshot", file, "--force-snapshot") as url:
        client = QdrantClient(url=url, check_compatibility=False, timeout=60)
        try:  # forced: the snapshot's "plain" replaced the empty one
            assert _state(client, "plain") == state["plain"]
        finally:
            client.close()
