"""A real-process migration harness shared by the kinds' end-to-end tests.

:class:`Stack` is the embedded upstream in its own process (``tests/upstream_process.py``,
with an API key), a proxy process in front of it (``tests/keyed_proxy.py``'s spawn), the admin
REST client the CLI uses, and backfill daemon subprocesses (:meth:`Stack.backfill`, killable).
:class:`Writer` is an application writing through the proxy with the official qdrant-client
(REST or gRPC) for as long as a test runs: upserts, payload updates, deletes by id and by
filter, each on ids only it owns (``owner`` field), so its log is the exact expected state;
:func:`compare` counts lost / resurrected / stale points of a collection against the logs.

A write the proxy refuses (e.g. 503 while it cannot trust its state) did not apply and is
retried as a client should (every operation here is idempotent); a write that keeps failing
fails the test.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from keyed_proxy import _ready, _spawn
from switchyard.proxy.dataplane.digest import DIGEST_FIELD
from switchyard.proxy.migration.command import AdminClient
from switchyard.proxy.state.store import StateStore
from upstream_process import UpstreamProcess

ROOT = Path(__file__).resolve().parents[1]
TAGS = 40  # a delete by filter removes about 1/TAGS of a writer's points


@dataclass
class Stack:
    upstream: UpstreamProcess
    proxy: subprocess.Popen[str]
    rest_url: str
    grpc_port: int
    key: str
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def start(cls) -> Stack:
        key = "sk-" + uuid.uuid4().hex
        up = UpstreamProcess(api_key=key).start()
        try:
            proc = _spawn(up, key, ())  # type: ignore[arg-type]  # duck-typed: rest_url, grpc_address
            rest, grpc_port = _ready(proc)
        except BaseException:
            up.stop()
            raise
        return cls(up, proc, rest, grpc_port, key)

    def stop(self) -> None:
        for d in self.daemons:
            if d.poll() is None:
                d.kill()
                d.wait(10)
        if self.proxy.poll() is None:
            self.proxy.terminate()
            try:
                self.proxy.wait(15)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait(5)
        self.upstream.stop()

    def client(self, grpc: bool = False) -> AsyncQdrantClient:
        """An application client through the proxy (official qdrant-client, REST or gRPC)."""
        return AsyncQdrantClient(url=self.rest_url, grpc_port=self.grpc_port, prefer_grpc=grpc,
                                 api_key=self.key, https=False, check_compatibility=False, timeout=60)

    def direct(self) -> AsyncQdrantClient:
        return AsyncQdrantClient(url=self.upstream.rest_url, api_key=self.key, https=False,
                                 check_compatibility=False, timeout=60)

    def admin(self) -> AdminClient:
        return AdminClient(self.rest_url, None)  # loopback: no admin key needed

    @staticmethod
    def store(client: AsyncQdrantClient) -> StateStore:
        return StateStore(client)

    def backfill(self, mid: str, *extra: str) -> subprocess.Popen[bytes]:
        """A backfill daemon subprocess (``python -m switchyard.proxy backfill MID --once``)."""
        env = {**os.environ, "SWITCHYARD_API_KEY": self.key}
        proc = subprocess.Popen(
            [sys.executable, "-m", "switchyard.proxy", "--log-level", "WARNING", "backfill", mid,
             "--url", self.upstream.rest_url, "--once", "--owner", f"d{len(self.daemons)}", *extra],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.daemons.append(proc)
        return proc


async def copied(store: StateStore, mid: str) -> int:
    """Points the daemons have checkpointed for ``mid`` (their leases' ``copied``)."""
    return sum(int(e.data.get("copied") or 0) for e in await store.list("lease") if e.key.startswith(mid))


async def backfill_with_kills(stack: Stack, store: StateStore, mid: str, kills: int, *,
                              seed: int = 5, timeout: float = 240.0, extra: tuple[str, ...] = ()) -> int:
    """Run daemons, SIGKILLing each once it made progress (at a random moment after), until
    ``kills`` kills happened; then one more runs to the end. Returns the number of kills."""
    rng, done = random.Random(seed), 0
    deadline = time.monotonic() + timeout
    while done < kills and time.monotonic() < deadline:
        proc = stack.backfill(mid, *extra)
        before = await copied(store, mid)
        while await copied(store, mid) == before and proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:  # it finished the work before a kill: no more kills possible
            break
        proc.send_signal(signal.SIGKILL)
        done += 1
        await asyncio.to_thread(proc.wait, 10)
    return done


async def finish_backfill(stack: Stack, mid: str, timeout: float = 240.0) -> None:
    proc = stack.backfill(mid)
    _, err = await asyncio.to_thread(proc.communicate, None, timeout)
    assert proc.returncode == 0, err.decode()[-3000:]


def seed_point(i: int, rng: random.Random) -> models.PointStruct:
    owner = "rest" if i % 2 == 0 else "grpc"
    return models.PointStruct(id=i, vector=[rng.uniform(0.1, 1.0) for _ in range(4)],
                              payload={"text": f"doc {i}", "doc_id": str(i), "owner": owner,
                                       "tag": i % TAGS, "v": 0})


class Writer:
    """Writes through the proxy on the ids of its ``owner`` (even ids: rest, odd: grpc) and
    logs the state every id must end in (``expected``; ids absent there must be absent)."""

    def __init__(self, client: AsyncQdrantClient, logical: str, owner: str, seeded: dict[int, dict[str, Any]],
                 id_space: int, seed: int) -> None:
        self.client, self.logical, self.owner = client, logical, owner
        parity = 0 if owner == "rest" else 1
        self.ids = [i for i in range(id_space) if i % 2 == parity]
        self.expected = {i: dict(s) for i, s in seeded.items() if i % 2 == parity}
        self.rng = random.Random(seed)
        self.version = 0
        #: the layout this client writes vectors in ("" unnamed); a test flips it when a switch
        #: moves the write primary to a collection of another layout (read at every attempt)
        self.vector_name = ""
        self.ops = {"upsert": 0, "set_payload": 0, "delete_ids": 0, "delete_filter": 0, "retries": 0}

    async def _retry(self, what: str, call: Any) -> None:
        for attempt in range(40):
            try:
                await call()
                self.ops[what] += 1
                return
            except Exception as exc:  # noqa: BLE001 - a refused write did not apply: retry it
                last = exc
                self.ops["retries"] += 1
                await asyncio.sleep(0.1 * min(attempt + 1, 10))
        raise AssertionError(f"{self.owner} writer: {what} kept failing: {last!r}")

    async def step(self) -> None:
        self.version += 1
        v, op = self.version, self.rng.random()
        if op < 0.45:
            ids = self.rng.sample(self.ids, 3)
            pts = {i: {"vector": [self.rng.uniform(0.1, 1.0) for _ in range(4)],
                       "payload": {"text": f"doc {i} {self.owner} v{v}", "doc_id": str(i), "owner": self.owner,
                                   "tag": self.rng.randrange(TAGS), "v": v}} for i in ids}
            await self._retry("upsert", lambda: self.client.upsert(self.logical, [
                models.PointStruct(id=i, vector={self.vector_name: p["vector"]} if self.vector_name else p["vector"],
                                   payload=p["payload"]) for i, p in pts.items()], wait=True))
            self.expected.update(pts)
        elif op < 0.75:
            alive = self.rng.sample(sorted(self.expected), min(3, len(self.expected)))
            if not alive:
                return
            patch = {"v": v, "text": f"edited {self.owner} v{v}"}
            await self._retry("set_payload", lambda: self.client.set_payload(
                self.logical, patch, points=alive, wait=True))
            for i in alive:
                self.expected[i] = {**self.expected[i], "payload": {**self.expected[i]["payload"], **patch}}
        elif op < 0.95:
            ids = self.rng.sample(self.ids, 3)
            await self._retry("delete_ids", lambda: self.client.delete(
                self.logical, models.PointIdsList(points=ids), wait=True))
            for i in ids:
                self.expected.pop(i, None)
        else:
            tag = self.rng.randrange(TAGS)
            flt = models.Filter(must=[
                models.FieldCondition(key="owner", match=models.MatchValue(value=self.owner)),
                models.FieldCondition(key="tag", match=models.MatchValue(value=tag))])
            await self._retry("delete_filter", lambda: self.client.delete(
                self.logical, models.FilterSelector(filter=flt), wait=True))
            for i in [i for i, p in self.expected.items() if p["payload"].get("tag") == tag]:
                del self.expected[i]

    async def run(self, stop: asyncio.Event, max_steps: int = 100_000) -> None:
        for _ in range(max_steps):
            if stop.is_set():
                return
            await self.step()
            await asyncio.sleep(0.005)


async def dump(client: AsyncQdrantClient, collection: str) -> dict[Any, models.Record]:
    out: dict[Any, models.Record] = {}
    offset: Any = None
    while True:
        recs, offset = await client.scroll(collection, offset=offset, limit=500, with_payload=True,
                                           with_vectors=True)
        out.update({r.id: r for r in recs})
        if offset is None:
            return out


def _unit(v: Any) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(a)
    return a / n if n else a


def _vector(record: models.Record, name: str) -> Any:
    v = record.vector
    return v.get(name) if isinstance(v, dict) else v


def compare(actual: dict[Any, models.Record], expected: dict[int, dict[str, Any]], vector_name: str = "",
            tolerance: float = 2e-3) -> dict[str, Any]:
    """lost (expected, absent), resurrected (present, not expected), stale (payload content or
    the direction of the vector differs), with up to 5 sample ids each."""
    lost = [i for i in expected if i not in actual]
    resurrected = [i for i in actual if i not in expected]
    stale = []
    for i, want in expected.items():
        rec = actual.get(i)
        if rec is None:
            continue
        content = {k: v for k, v in (rec.payload or {}).items()
                   if not k.startswith("embedding_") and k != DIGEST_FIELD}
        got = _vector(rec, vector_name)
        if content != want["payload"] or got is None or \
                float(np.max(np.abs(_unit(got) - _unit(want["vector"])))) > tolerance:
            stale.append(i)
    return {"lost": len(lost), "resurrected": len(resurrected), "stale": len(stale),
            "samples": {"lost": lost[:5], "resurrected": resurrected[:5], "stale": stale[:5]}}
