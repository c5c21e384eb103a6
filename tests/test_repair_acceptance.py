"""Issue 11 items 3, 5 and 6 on real processes: the repair log holds what applied, and only that.

- item 3: a flood of writes the keyed upstream refuses (1,000 keyless upserts, and invalid ones
  from a keyed client) leaves 0 repair records;
- item 5: when the primary applied and the mirror fails (the target's leg cut by a relay; an
  exception inside the mirror), the client gets the primary's 2xx and the ids are recorded;
- item 6: a proxy process SIGKILLed at random moments of a mixed write load (every write kind,
  delete-by-filter included, REST and gRPC) leaves, after each restart with the same identity and spool, a
  repair record for every difference between source and target; the backfill's replay and a
  verify then end clean.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from backfill_helpers import setup_migration
from switchyard.proxy.dataplane import repair_log
from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.embedded.server import BackgroundUpstream
from switchyard.proxy.migration.service import MigrationService, ServiceConfig
from switchyard.proxy.state.store import StateStore

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"switchyard proxy ready rest=(\S+) grpc=(\S+)")
META = ("embedding_", "switchyard_")  # per-model metadata and the target's source digest


class ProxyProc:
    """``python -m switchyard.proxy proxy`` with a fixed identity and spool directory (so a restart finds
    what the killed one left)."""

    def __init__(self, rest_url: str, grpc_address: str, spool: Path, instance: str,
                 env: dict[str, str] | None = None) -> None:
        self.cmd = [sys.executable, "-m", "switchyard.proxy", "proxy", "--upstream-rest-url", rest_url,
                    "--upstream-grpc-address", grpc_address, "--listen-rest", "127.0.0.1:0",
                    "--listen-grpc", "127.0.0.1:0", "--instance-id", instance, "--spool-dir", str(spool),
                    "--state-cache-ttl", "0.2", "--heartbeat-interval", "0.3", "--heartbeat-ttl", "3",
                    "--max-active-migrations", "1000", "--drain-seconds", "1"]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.rest, self.grpc_port = "", 0

    def start(self) -> ProxyProc:
        self.log = Path(self.cmd[self.cmd.index("--spool-dir") + 1]) / "proxy-stderr.log"
        with self.log.open("a") as err:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                         stderr=err, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if m := READY.search(line):
                self.rest, self.grpc_port = "http://" + m[1], int(m[2].rpartition(":")[2])
                return self
            if self.proc.poll() is not None:
                break
        self.proc.kill()
        raise AssertionError("proxy did not start: " + self.log.read_text()[-2000:])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _records(url: str, mid: str, key: str | None = None) -> list[repair_log.RepairEntry]:
    async def go() -> list[repair_log.RepairEntry]:
        client = AsyncQdrantClient(url=url, api_key=key, https=False, check_compatibility=False)
        try:
            return await repair_log.pending(StateStore(client), mid)
        finally:
            await client.close()
    return asyncio.run(go())


def _content(payload: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (payload or {}).items() if not k.startswith(META)}


def _differences(direct: QdrantClient, source: str, target: str) -> set[str]:
    """Ids whose client content differs between source and target (missing, extra or stale)."""
    src = {str(p.id): _content(p.payload) for p in direct.scroll(source, limit=10_000)[0]}
    tgt = {str(p.id): _content(p.payload) for p in direct.scroll(target, limit=10_000)[0]}
    return {pid for pid in src.keys() | tgt.keys() if src.get(pid) != tgt.get(pid)}


# -- item 3 -------------------------------------------------------------------------------------

def test_refused_writes_leave_no_repair_record(tmp_path: Path, prefix: str) -> None:
    key = "sk-" + uuid.uuid4().hex
    upstream = BackgroundUpstream(keys=ApiKeys(api_key=key))
    upstream.start()
    proxy = ProxyProc(upstream.rest_url, upstream.grpc_address, tmp_path, f"flood-{prefix}",
                      {"SWITCHYARD_UPSTREAM_API_KEY": key})
    try:
        async def setup() -> str:
            client = AsyncQdrantClient(url=upstream.rest_url, api_key=key, https=False, check_compatibility=False)
            try:
                return await setup_migration(client, StateStore(client), prefix, [1, 2, 3])
            finally:
                await client.close()
        proxy.start()
        mid = asyncio.run(setup())
        alias = f"{prefix}docs"
        refused = {401: 0, 400: 0}
        with closing(QdrantClient(url=proxy.rest, check_compatibility=False, timeout=30)) as anonymous:
            for i in range(1000):
                try:
                    anonymous.upsert(alias, [models.PointStruct(id=i, vector=[0.1, 0.2, 0.3, 0.4],
                                                                payload={"text": f"t{i}"})])
                except Exception as exc:  # noqa: BLE001 - the upstream's refusal, as a client error
                    refused[401] += "401" in str(exc)
        with closing(QdrantClient(url=proxy.rest, api_key=key, https=False, check_compatibility=False)) as keyed:
            for i in range(50):  # wrong dimension: the primary refuses it as invalid
                try:
                    keyed.upsert(alias, [models.PointStruct(id=i, vector=[0.1, 0.2], payload={"text": "x"})])
                except Exception as exc:  # noqa: BLE001
                    refused[400] += "400" in str(exc)
            assert keyed.count(alias).count == 3  # nothing applied
        records = _records(upstream.rest_url, mid, key)
        print(f"\nitem 3: {refused[401]} keyless upserts (401), {refused[400]} invalid upserts (400): "
              f"{len(records)} repair records")
        assert refused == {401: 1000, 400: 50}
        assert records == []
    finally:
        proxy.stop()
        upstream.stop()


# -- item 5 -------------------------------------------------------------------------------------

def test_mirror_failure_after_primary_success_is_recorded(upstream: Any, tmp_path: Path, prefix: str) -> None:
    """The target's leg is cut (connection reset mid-request) for a while: every write the
    primary applied answers 2xx and its ids are in the repair log."""
    from fault_relay import FaultRelay

    parsed = urlparse(upstream.rest_url)
    with FaultRelay(parsed.hostname or "127.0.0.1", parsed.port or 80) as relay:
        proxy = ProxyProc(relay.url, f"{upstream.grpc_host}:{upstream.grpc_port}", tmp_path, f"cut-{prefix}")
        proxy.start()
        try:
            async def setup() -> str:
                client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
                try:
                    return await setup_migration(client, StateStore(client), prefix, [1])
                finally:
                    await client.close()
            mid = asyncio.run(setup())
            m = asyncio.run(_migration(upstream.rest_url, mid))
            alias, source = m["logical"], m["source"]
            relay.fail(f"/collections/{m['target']}/")
            with closing(QdrantClient(url=proxy.rest, check_compatibility=False, timeout=30)) as c, \
                    closing(QdrantClient(url=proxy.rest, prefer_grpc=True, check_compatibility=False,
                                         grpc_port=proxy.grpc_port)) as g:
                r1 = c.upsert(alias, [models.PointStruct(id=i, vector=[0.1, 0.2, 0.3, 0.4],
                                                         payload={"text": f"t{i}", "doc_id": str(i)}) for i in (7, 8)])
                r2 = g.set_payload(alias, {"text": "edited"}, points=[1])
                r3 = c.delete(alias, models.FilterSelector(filter=models.Filter(must=[
                    models.FieldCondition(key="doc_id", match=models.MatchValue(value="8"))])))
            relay.fail(None)
            assert {r.status for r in (r1, r2, r3)} == {models.UpdateStatus.COMPLETED}
            assert relay.cut >= 3
            ids = sorted(str(e.point_id) for e in _records(upstream.rest_url, mid))
            assert ids == ["1", "7", "8"]
            with closing(QdrantClient(url=upstream.rest_url, check_compatibility=False)) as direct:
                assert sorted(int(str(p.id)) for p in direct.scroll(source)[0]) == [1, 7]  # applied
        finally:
            proxy.stop()


async def _migration(url: str, mid: str) -> dict[str, Any]:
    client = AsyncQdrantClient(url=url, check_compatibility=False)
    try:
        return (await StateStore(client).require("migration", mid)).data
    finally:
        await client.close()


# -- item 6 -------------------------------------------------------------------------------------

def _workload(url: str, grpc_port: int, alias: str, stop: threading.Event, seed: int, done: list[int]) -> None:
    """Every write kind on ids 0..39 until ``stop`` (over gRPC when ``grpc_port``)."""
    rnd = random.Random(seed)
    vec = [0.1, 0.2, 0.3, 0.4]
    with closing(QdrantClient(url=url, prefer_grpc=bool(grpc_port), grpc_port=grpc_port or 6334,
                              check_compatibility=False, timeout=10)) as c:
        while not stop.is_set():
            i, g = rnd.randrange(40), rnd.randrange(4)
            flt = models.Filter(must=[models.FieldCondition(key="g", match=models.MatchValue(value=g))])
            op = rnd.randrange(9)
            try:
                if op == 0:
                    c.upsert(alias, [models.PointStruct(id=j, vector=vec, payload={"text": f"t{j} {seed}", "doc_id": str(j), "g": j % 4})
                                     for j in range(i, min(40, i + 5))])
                elif op == 1:
                    c.set_payload(alias, {"text": f"edited {seed}"}, points=[i, (i + 1) % 40])
                elif op == 2:
                    c.set_payload(alias, {"flag": seed}, points=models.FilterSelector(filter=flt))
                elif op == 3:
                    c.overwrite_payload(alias, {"text": f"over {seed}", "doc_id": str(i), "g": i % 4}, points=[i])
                elif op == 4:
                    c.delete_payload(alias, ["flag"], points=[i])
                elif op == 5:
                    c.delete(alias, [i])
                elif op == 6:
                    c.delete(alias, models.FilterSelector(filter=flt))
                elif op == 7:
                    c.update_vectors(alias, [models.PointVectors(id=i, vector=[0.4, 0.3, 0.2, 0.1])])
                else:
                    c.batch_update_points(alias, [
                        models.UpsertOperation(upsert=models.PointsList(points=[models.PointStruct(
                            id=i, vector=vec, payload={"text": f"b{seed}", "doc_id": str(i), "g": i % 4})])),
                        models.DeleteOperation(delete=models.PointIdsList(points=[(i + 7) % 40])),
                    ])
                done[0] += 1
            except Exception:  # noqa: BLE001 - the proxy was killed under this call, or a 404 id
                if stop.is_set():
                    return
                time.sleep(0.01)


@pytest.mark.slow
def test_sigkill_mid_write_leaves_a_repair_record_for_every_difference(
        upstream: Any, tmp_path: Path, prefix: str) -> None:
    rounds = 10
    instance = f"victim-{prefix}"
    proxy = ProxyProc(upstream.rest_url, f"{upstream.grpc_host}:{upstream.grpc_port}", tmp_path, instance)
    proxy.start()
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    try:
        async def setup() -> str:
            client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
            try:
                return await setup_migration(client, StateStore(client), prefix, list(range(40)))
            finally:
                await client.close()
        mid = asyncio.run(setup())
        m = asyncio.run(_migration(upstream.rest_url, mid))
        source, target, alias = m["source"], m["target"], m["logical"]
        # the backfill first, so differences below are the killed writes' only
        subprocess.run([sys.executable, "-m", "switchyard.proxy", "backfill", mid, "--once", "--url", upstream.rest_url],
                       check=True, capture_output=True, timeout=300, cwd=ROOT)
        assert _differences(direct, source, target) == set()
        rnd = random.Random(11)
        writes, max_diff = 0, 0
        for r in range(rounds):
            stop, done = threading.Event(), [0]
            workers = [threading.Thread(target=_workload, args=(
                proxy.rest, proxy.grpc_port if k == 2 else 0, alias, stop, r * 10 + k, done)) for k in range(3)]
            for w in workers:
                w.start()
            flowing = time.monotonic() + 30
            while not done[0] and time.monotonic() < flowing:  # writes are going through
                time.sleep(0.01)
            assert done[0], f"round {r}: no write went through the proxy"
            time.sleep(rnd.uniform(0.05, 0.5))  # then a random moment
            proxy.kill()  # mid-write: three clients (two REST, one gRPC) keep writes in flight
            stop.set()
            for w in workers:
                w.join(20)
            writes += done[0]
            proxy.start()  # same identity and spool: its pending intents become repair records
            diff = _differences(direct, source, target)
            entries = _records(upstream.rest_url, mid)
            recorded = {str(e.point_id) for e in entries if e.point_id is not None}
            assert [e for e in entries if e.point_id is None] == []  # no catch-all: the check means something
            assert diff <= recorded, f"round {r}: differences {sorted(diff - recorded)} have no repair record"
            max_diff = max(max_diff, len(diff))
        print(f"\nitem 6: {rounds} SIGKILLs, {writes} writes acknowledged, up to {max_diff} differing ids, "
              f"{len(recorded)} repair records at the end; every difference covered")
        subprocess.run([sys.executable, "-m", "switchyard.proxy", "backfill", mid, "--once", "--url", upstream.rest_url],
                       check=True, capture_output=True, timeout=300, cwd=ROOT)
        assert _differences(direct, source, target) == set()
        assert _records(upstream.rest_url, mid) == []

        async def verify() -> str:
            client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
            try:
                svc = MigrationService(StateStore(client), client, ServiceConfig(ack_timeout=10.0, max_active=1000))
                return (await svc.verify(mid)).phase
            finally:
                await client.close()
        assert asyncio.run(verify()) == "verified"  # clean: the verify moved it on
    finally:
        proxy.stop()
        direct.close()


def test_exception_inside_the_mirror_is_recorded(upstream: Any, prefix: str, tmp_path: Path) -> None:
    """An exception no leg expects (the issue's ``TypeError: Integer exceeds 64-bit range`` from
    the mirror's encoding), raised after the primary applied: the client gets the primary's 200,
    the ids are in the repair log. Injected at the embedder pool, a seam we own."""
    from proxy_fixtures import start_proxy

    running = start_proxy(upstream.rest_url, upstream.grpc_host, upstream.grpc_port,
                          {"spool_dir": str(tmp_path)})
    try:
        async def setup() -> str:
            client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
            try:
                return await setup_migration(client, StateStore(client), prefix, [1])
            finally:
                await client.close()
        mid = asyncio.run(setup())
        m = asyncio.run(_migration(upstream.rest_url, mid))
        mirror = running.interceptor.mirror
        assert mirror is not None

        async def broken(*_: Any, **__: Any) -> Any:
            raise TypeError("Integer exceeds 64-bit range")
        mirror.pool.embed = broken  # type: ignore[method-assign]
        with closing(QdrantClient(url=running.rest_url, check_compatibility=False)) as c:
            result = c.upsert(m["logical"], [models.PointStruct(id=i, vector=[0.1, 0.2, 0.3, 0.4],
                                                                payload={"text": f"t{i}"}) for i in (5, 6)])
        assert result.status == models.UpdateStatus.COMPLETED
        entries = _records(upstream.rest_url, mid)
        assert sorted(e.point_id for e in entries) == [5, 6]  # type: ignore[type-var]
        assert all("TypeError" in e.reason for e in entries)
        with closing(QdrantClient(url=upstream.rest_url, check_compatibility=False)) as direct:
            assert direct.count(m["source"]).count == 3  # the primary applied
    finally:
        running.proxy.stop()


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
def test_mirrored_writes_wait_for_the_primary(upstream: Any, prefix: str, tmp_path: Path, grpc: bool) -> None:
    """``wait=false`` would let the primary answer before it applied, and the mirror's re-read
    could see the old point: the proxy waits for the primary of a mirrored write (the client
    sees ``completed``), and the target is level as soon as the call returns."""
    from proxy_fixtures import start_proxy

    running = start_proxy(upstream.rest_url, upstream.grpc_host, upstream.grpc_port,
                          {"spool_dir": str(tmp_path)})
    try:
        async def setup() -> str:
            client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
            try:
                return await setup_migration(client, StateStore(client), prefix, [1, 2])
            finally:
                await client.close()
        m = asyncio.run(_migration(upstream.rest_url, asyncio.run(setup())))
        with closing(QdrantClient(url=running.rest_url, prefer_grpc=grpc, grpc_port=running.grpc_port,
                                  check_compatibility=False)) as c, \
                closing(QdrantClient(url=upstream.rest_url, check_compatibility=False)) as direct:
            subprocess.run([sys.executable, "-m", "switchyard.proxy", "backfill", m["id"], "--once", "--url",
                            upstream.rest_url], check=True, capture_output=True, timeout=300, cwd=ROOT)
            results = [c.set_payload(m["logical"], {"text": "edited without waiting"}, points=[1], wait=False),
                       c.delete(m["logical"], [2], wait=False)]
            assert {r.status for r in results} == {models.UpdateStatus.COMPLETED}
            assert _differences(direct, m["source"], m["target"]) == set()
    finally:
        running.proxy.stop()


def test_id_of_2_pow_64_is_answered_like_direct_and_records_nothing(upstream: Any, prefix: str, tmp_path: Path) -> None:
    """The issue's id 2^64: the primary refuses it (400, as Qdrant does: ids are 0..2^64-1), so
    the proxy answers that same 400, never a 500, and no repair record is made."""
    import urllib.error
    import urllib.request

    from proxy_fixtures import start_proxy

    running = start_proxy(upstream.rest_url, upstream.grpc_host, upstream.grpc_port,
                          {"spool_dir": str(tmp_path)})
    try:
        async def setup() -> str:
            client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
            try:
                return await setup_migration(client, StateStore(client), prefix, [1])
            finally:
                await client.close()
        mid = asyncio.run(setup())
        m = asyncio.run(_migration(upstream.rest_url, mid))
        body = (b'{"points":[{"id":18446744073709551616,"vector":[0.1,0.2,0.3,0.4],'
                b'"payload":{"text":"big"}},{"id":2,"vector":[0.1,0.2,0.3,0.4],"payload":{"text":"two"}}]}')

        def put(base: str, collection: str) -> int:
            req = urllib.request.Request(f"{base}/collections/{collection}/points?wait=true", data=body,
                                         method="PUT", headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return resp.status
            except urllib.error.HTTPError as err:
                return err.code
        direct_status = put(upstream.rest_url, m["source"])
        proxied_status = put(running.rest_url, m["logical"])
        assert proxied_status == direct_status and proxied_status < 500
        assert _records(upstream.rest_url, mid) == []
    finally:
        running.proxy.stop()
