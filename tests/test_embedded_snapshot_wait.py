"""``?wait=false`` snapshot creation runs in the background: the 202 ``{"status": "accepted"}``
comes at once and the snapshot shows up in the list afterwards (collection and full-storage
snapshots, on both engines and on a real Qdrant); a failure is logged with its reason; shutdown
lets a running one finish before the engine closes (:mod:`background_work`).

No timing assertions: the lists are polled in bounded loops, and the shutdown test holds the
full-snapshot lock so the work is certainly still running when the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from embedded_layout_fixtures import Target, clients, edge_server, local_server, prefix, target  # noqa: F401

from switchyard.proxy.embedded.background_work import BackgroundWork
from switchyard.proxy.embedded.server import EmbeddedUpstream
from switchyard.proxy.errors import BadRequest

POLLS = 600  # x 0.1 s: a minute for a background snapshot to show up


def _small(client: QdrantClient, name: str) -> None:
    client.create_collection(name, models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert(name, [models.PointStruct(id=i, vector=[1.0, float(i)]) for i in range(1, 11)])


def _until(found: Callable[[], Any]) -> Any:
    """Poll ``found()`` until it is truthy (bounded: fails after :data:`POLLS` tries)."""
    for _ in range(POLLS):
        value = found()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail("the background snapshot never appeared")


def _accepted(r: httpx.Response) -> None:
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted" and "result" not in r.json()


def test_collection_snapshot_wait_false(target: Target, clients, prefix: str) -> None:
    rest, _ = clients
    name = f"{prefix}bg"
    _small(rest, name)
    with httpx.Client(base_url=target.rest_url, timeout=60) as http:
        _accepted(http.post(f"/collections/{name}/snapshots", params={"wait": "false"}))
        made = _until(lambda: rest.list_snapshots(name))
        assert len(made) == 1 and made[0].size > 0
        # a missing collection is refused before anything is accepted, as on Qdrant
        r = http.post(f"/collections/{prefix}missing/snapshots", params={"wait": "false"})
        assert r.status_code == 404
        _accepted(http.delete(f"/collections/{name}/snapshots/{made[0].name}",
                              params={"wait": "false"}))
        _until(lambda: rest.list_snapshots(name) == [])
        r = http.post(f"/collections/{name}/snapshots", params={"wait": "maybe"})
        assert r.status_code == 400 and "wait" in r.text


def test_full_snapshot_wait_false(target: Target, clients, prefix: str) -> None:
    rest, _ = clients
    _small(rest, f"{prefix}bgfull")
    before = {s.name for s in rest.list_full_snapshots()}
    with httpx.Client(base_url=target.rest_url, timeout=60) as http:
        _accepted(http.post("/snapshots", params={"wait": "false"}))
        made = _until(lambda: [s for s in rest.list_full_snapshots() if s.name not in before])
        assert len(made) == 1 and made[0].size > 0
        _accepted(http.delete(f"/snapshots/{made[0].name}", params={"wait": "false"}))
        _until(lambda: made[0].name not in {s.name for s in rest.list_full_snapshots()})
        r = http.post("/snapshots", params={"wait": "maybe"})
        assert r.status_code == 400 and "wait" in r.text


@pytest.mark.embedded_only  # stops a server of its own
@pytest.mark.parametrize("engine", ["local", "edge"])
async def test_shutdown_lets_a_running_snapshot_finish(tmp_path, engine: str) -> None:
    from switchyard.proxy.embedded.engines import edge_available

    if engine == "edge" and not edge_available():
        pytest.skip("qdrant-edge-py is not installed here")
    store = str(tmp_path / "snapshots")
    server = EmbeddedUpstream(engine=engine, snapshots_path=store)
    await server.start()
    stopping: asyncio.Task[None] | None = None
    try:
        client = AsyncQdrantClient(url=server.rest_url, check_compatibility=False)
        await client.create_collection("c", models.VectorParams(size=2, distance=models.Distance.DOT))
        await client.upsert("c", [models.PointStruct(id=1, vector=[1.0, 0.0])])
        await client.close()
        assert server.snapshots is not None
        lock = server.snapshots.full_lock
        async with lock:  # the background creation waits here: it is running at shutdown
            async with httpx.AsyncClient(base_url=server.rest_url, timeout=60) as http:
                _accepted(await http.post("/snapshots", params={"wait": "false"}))
            assert server.background.running == 1
            stopping = asyncio.get_running_loop().create_task(server.stop())
            for _ in range(POLLS):
                if server.background.draining:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("stop() never started draining the background work")
            assert server.background.running == 1  # not cancelled: still waiting for the lock
        await stopping
    finally:
        if stopping is None:
            await server.stop()
    full = [f for f in os.listdir(store) if f.startswith("full-snapshot-") and f.endswith(".snapshot")]
    assert len(full) == 1 and os.path.exists(os.path.join(store, full[0] + ".checksum"))


async def test_failures_are_logged_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    work = BackgroundWork()
    gate = asyncio.Event()
    error = BadRequest("Collection `gone` doesn't exist!")

    async def fails() -> None:
        await gate.wait()
        raise error

    with caplog.at_level(logging.ERROR, logger="switchyard.embedded"):
        work.start("snapshot of collection 'gone'", fails)
        assert work.running == 1
        gate.set()
        await work.drain()
    assert work.running == 0
    assert f"background snapshot of collection 'gone' failed: {error.message}" in caplog.text
    assert "doesn't exist!" in error.message
    with pytest.raises(RuntimeError):  # drained: no new work
        work.start("late", fails)


async def test_drain_cancels_what_outlives_the_grace() -> None:
    work = BackgroundWork()
    work.start("stuck", asyncio.Event().wait)
    await work.drain(grace=0)
    assert work.running == 0
