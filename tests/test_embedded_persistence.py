"""Durability of ``switchyard upstream --path``: every write acknowledged with ``wait=true``
survives ``kill -9`` of the server process, and a SIGTERM drains and exits cleanly.

Real subprocesses (``python -m switchyard.proxy upstream``) on port 0; the test learns the ports from the
ready line the command prints. Every wait is bounded.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models

pytestmark = pytest.mark.embedded_only

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"switchyard upstream ready http=(?P<http>\S+):(?P<hport>\d+) grpc=\S+:(?P<gport>\d+)")
START_TIMEOUT = 30.0


@contextmanager
def upstream_process(path: Path) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    """Start the command, wait (bounded) for its ready line; yield (process, rest url, grpc port)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchyard.proxy", "upstream", "--path", str(path), "--http-port", "0", "--grpc-port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout or []:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        line = lines.get(timeout=START_TIMEOUT)
        m = READY.search(line)
        assert m, f"unexpected first line: {line!r}"
        yield proc, f"http://{m['http']}:{m['hport']}", int(m["gport"])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=START_TIMEOUT)
        reader.join(timeout=START_TIMEOUT)


def _points(start: int, n: int) -> list[models.PointStruct]:
    return [
        models.PointStruct(id=i, vector=[1.0, float(i % 5), 0.5, float(i % 3)], payload={"n": i, "doc": f"d{i}"})
        for i in range(start, start + n)
    ]


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    store = tmp_path / "store"
    acknowledged: set[int] = set()
    with upstream_process(store) as (proc, url, grpc_port):
        rest = QdrantClient(url=url, check_compatibility=False)
        grpc = QdrantClient(url=url, prefer_grpc=True, grpc_port=grpc_port, check_compatibility=False)
        try:
            rest.create_collection("durable", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
            rest.create_collection("dropped", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
            rest.update_collection_aliases(
                [models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name="durable", alias_name="live"))]
            )
            for batch in range(10):
                client = rest if batch % 2 == 0 else grpc
                result = client.upsert("durable", _points(batch * 20, 20), wait=True)
                assert result.status == models.UpdateStatus.COMPLETED
                acknowledged.update(range(batch * 20, batch * 20 + 20))
            rest.set_payload("durable", payload={"patched": True}, points=[0, 1, 2], wait=True)
            rest.delete("durable", points_selector=models.PointIdsList(points=[3, 4]), wait=True)
            acknowledged -= {3, 4}
            rest.delete_collection("dropped")
        finally:
            rest.close()
            grpc.close()
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=START_TIMEOUT) == -signal.SIGKILL

    with upstream_process(store) as (proc, url, _):
        client = QdrantClient(url=url, check_compatibility=False)
        try:
            assert [c.name for c in client.get_collections().collections] == ["durable"]
            assert [a.alias_name for a in client.get_aliases().aliases] == ["live"]
            records = client.retrieve("live", ids=sorted(acknowledged | {3, 4}), with_vectors=True)
            assert {r.id for r in records} == acknowledged
            by_id = {r.id: r for r in records}
            assert by_id[0].payload == {"n": 0, "doc": "d0", "patched": True}
            assert by_id[199].payload == {"n": 199, "doc": "d199"}
            assert client.count("durable", exact=True).count == len(acknowledged)
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=START_TIMEOUT) == 0, "SIGTERM must drain and exit 0"


def test_sigterm_drains_and_data_reopens(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with upstream_process(store) as (proc, url, _):
        client = QdrantClient(url=url, check_compatibility=False)
        try:
            client.create_collection("c", vectors_config=models.VectorParams(size=4, distance=models.Distance.EUCLID))
            client.upsert("c", _points(0, 5), wait=True)
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=START_TIMEOUT) == 0
    # the storage lock was released: a new process opens the same directory
    with upstream_process(store) as (proc, url, _):
        client = QdrantClient(url=url, check_compatibility=False)
        try:
            assert client.count("c").count == 5
        finally:
            client.close()
