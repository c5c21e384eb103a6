"""Plan options: the throttle (``None`` unthrottled, 0 paused, everywhere: decision 1) and the
merged reads' doc-key lookup mode (``exact`` or ``ids``: decision 3).

Tables for the pure parts (record migration of the older layout, the admin API's reading of a
throttle request, plan validation, status text); then real processes: plans made with the CLI
against the session's proxy process, its status, the backfill daemon as a subprocess, and
merged reads through the proxy.
"""

from __future__ import annotations

import aiohttp
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from switchyard.backfill.throttle import operator_rate
from backfill_helpers import A, B, seed_source
from cli_in_process import cli
from switchyard.proxy.admin.service import throttle_value
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.migration.command import throttle_text
from switchyard.proxy.dataplane.read_transport import MERGE_HEADER
from switchyard.proxy.migration.planner import PlanRequest, validate
from switchyard.proxy.migration.record import LAYOUT, Migration, migrate_throttle
from switchyard.proxy.state.store import StateStore
from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]

# (stored throttle, layout, history actions) -> throttle today
MIGRATE = [
    (0.0, 1, ["plan"], None),                                  # a plan's default: unthrottled
    (None, 1, ["plan"], None),
    (0.0, 1, ["plan", "throttle:200", "throttle:0"], 0.0),     # `throttle 0`: paused
    (0.0, 1, ["plan", "throttle:0", "pause", "resume"], 0.0),  # other knobs keep it paused
    (0.0, 1, ["plan", "throttle:0", "throttle:5"], None),      # (stored 0 after 5: impossible)
    (25.0, 1, ["plan"], 25.0),
    (25.0, 1, ["plan", "throttle:0", "throttle:25"], 25.0),
    (None, 2, ["plan"], None),
    (0.0, 2, ["plan"], 0.0),                                   # layout 2: 0 is paused, always
    (7.5, 2, [], 7.5),
]


@pytest.mark.parametrize(("stored", "layout", "history", "expected"), MIGRATE)
def test_migrate_throttle(stored: Any, layout: int, history: list[str], expected: float | None) -> None:
    assert migrate_throttle(stored, layout, history) == expected


def _old_record(throttle: float, actions: list[str]) -> dict[str, Any]:
    m = Migration(id="m", logical="d", source="s", target="t", model_a="a", model_b="b")
    data = m.stored()
    del data["layout"]  # written by the code before layouts
    data["throttle"] = throttle
    data["history"] = [{"at": 1.0, "action": a, "from_phase": "planned", "to_phase": "planned",
                        "rev": 1, "reason": ""} for a in actions]
    return data


def test_old_records_migrate_on_read_and_store_the_new_layout() -> None:
    unthrottled = Migration.from_dict(_old_record(0.0, ["plan"]))
    paused = Migration.from_dict(_old_record(0.0, ["plan", "throttle:0"]))
    assert (unthrottled.throttle, paused.throttle) == (None, 0.0)
    for m in (unthrottled, paused):
        stored = m.stored()
        assert stored["layout"] == LAYOUT and Migration.from_dict(stored).throttle == m.throttle
    assert operator_rate(unthrottled.throttle, False)[0] == float("inf")
    assert operator_rate(paused.throttle, False) == (0.0, "throttle 0 (paused) by operator")


REQUESTS = [
    (0, None, 0.0), (0.0, False, 0.0), (12, None, 12.0), (None, True, None), (None, "true", None),
]


@pytest.mark.parametrize(("rate", "unthrottled", "expected"), REQUESTS)
def test_throttle_request(rate: Any, unthrottled: Any, expected: float | None) -> None:
    assert throttle_value(rate, unthrottled) == expected


@pytest.mark.parametrize(("rate", "unthrottled", "match"), [
    (None, None, "points_per_second"), (None, False, "unthrottled: true"), ("5", None, "number"),
    (True, None, "number"), (5, True, "not both")])
def test_throttle_request_refused(rate: Any, unthrottled: Any, match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        throttle_value(rate, unthrottled)


@pytest.mark.parametrize(("throttle", "text"), [
    (None, "unthrottled"), (0, "0 (paused)"), (0.0, "0 (paused)"), (250.0, "250 points/s")])
def test_throttle_text(throttle: Any, text: str) -> None:
    assert throttle_text(throttle) == text


def test_plan_request_default_is_unthrottled() -> None:
    assert PlanRequest("d", "b").throttle is None
    assert PlanRequest.from_dict({"logical": "d", "to_model": "b", "throttle": None}).throttle is None
    assert PlanRequest.from_dict({"logical": "d", "to_model": "b", "throttle": 0}).throttle == 0



def test_lookup_mode_defaults_to_exact_and_old_records_read_as_exact() -> None:
    m = Migration(id="m", logical="d", source="s", target="t", model_a="a", model_b="b")
    assert m.lookup == "exact" and PlanRequest("d", "b").lookup == "exact"
    old = m.stored()
    del old["lookup"], old["layout"]  # written before the lookup mode was a plan option
    assert Migration.from_dict(old).lookup == "exact"
    assert Migration.from_dict({**old, "lookup": "ids"}).lookup == "ids"
    with pytest.raises(BadRequest, match="unknown lookup mode 'filter'"):
        Migration.from_dict({**old, "lookup": "filter"})


@pytest.mark.parametrize(("lookup", "throttle", "reasons"), [
    ("exact", None, []), ("ids", 0, []), ("ids", 12.5, []),
    ("filter", None, ["lookup must be one of exact, ids, got 'filter'"]),
    ("exact", -1, ["throttle must be a number >= 0"]),
    ("exact", "fast", ["throttle must be a number >= 0"]),
    ("nope", True, ["throttle must be a number >= 0", "lookup must be one of"])])
def test_plan_refuses_bad_options(lookup: str, throttle: Any, reasons: list[str]) -> None:
    from test_migration_phases import facts
    got = validate(facts(request=PlanRequest("docs", "b", lookup=lookup, throttle=throttle)))
    assert len(got) == len(reasons), got
    for reason, fragment in zip(got, reasons):
        assert fragment in reason


# -- real processes: the session's proxy process, the backfill daemon as a subprocess; the CLI
#    runs in this process (a subprocess per CLI call costs seconds of interpreter start)


def daemon(upstream: Any, mid: str, owner: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "switchyard.proxy", "--log-level", "WARNING", "backfill", mid, "--url",
         upstream.rest_url, "--once", "--owner", owner, "--batch-size", "50"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
async def world(upstream: Any) -> AsyncIterator[tuple[AsyncQdrantClient, StateStore]]:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    yield client, StateStore(client)  # the proxies' own state store
    await client.close()


async def source(client: AsyncQdrantClient, store: StateStore, prefix: str, n: int) -> str:
    """``<prefix>docs`` (alias of ``<prefix>docs_v1``) with ``n`` points, bound to model A."""
    return (await seed_source(client, store, prefix, range(n)))[0]


async def plan(proxy: RunningProxy, logical: str, *extra: str) -> str:
    code, out, err = await cli("migrate", "plan", logical, "--to-model", B.id, "--url",
                               proxy.rest_url, "--json", *extra)
    assert code == 0, err
    mid = str(json.loads(out)["migration"]["id"])
    code, _, err = await cli("migrate", "start", mid, "--url", proxy.rest_url)
    assert code == 0, err
    return mid


async def status_text(proxy: RunningProxy, mid: str) -> str:
    code, out, err = await cli("migrate", "status", mid, "--url", proxy.rest_url)
    assert code == 0, err
    return out


async def test_plan_without_throttle_is_unthrottled_and_the_backfill_runs(
        switchyard: RunningProxy, world: Any, upstream: Any, prefix: str) -> None:  # noqa: F811
    client, store = world
    mid = await plan(switchyard, await source(client, store, prefix, 120))
    assert "throttle unthrottled" in await status_text(switchyard, mid)
    proc = daemon(upstream, mid, "unthrottled")
    _, err = await asyncio.to_thread(proc.communicate, timeout=120)
    assert proc.returncode == 0, err
    m = Migration.from_envelope(await store.require(Migration.KIND, mid))
    assert m.throttle is None and m.backfill == "done"
    assert (await client.count(m.target, exact=True)).count == 120


async def test_plan_with_throttle_zero_is_paused_until_unthrottled(
        switchyard: RunningProxy, world: Any, upstream: Any, prefix: str) -> None:  # noqa: F811
    client, store = world
    mid = await plan(switchyard, await source(client, store, prefix, 80), "--throttle", "0")
    assert "throttle 0 (paused)" in await status_text(switchyard, mid)
    target = Migration.from_envelope(await store.require(Migration.KIND, mid)).target
    proc = daemon(upstream, mid, "paused")
    try:
        deadline = time.monotonic() + 60
        while True:  # the daemon publishes its state; paused, it writes nothing
            env = await store.get("backfill_progress", f"{mid}/paused")
            if env is not None and env.data.get("state") == "paused":
                break
            assert proc.poll() is None and time.monotonic() < deadline, "daemon never reported paused"
            await asyncio.sleep(0.1)
        assert env.data["reason"] == "throttle 0 (paused) by operator"
        assert (await client.count(target, exact=True)).count == 0
        assert "daemon paused: paused (throttle 0 (paused) by operator)" in await status_text(switchyard, mid)
        code, out, err = await cli("migrate", "throttle", mid, "none", "--url", switchyard.rest_url, "--json")
        assert code == 0, err
        assert json.loads(out)["migration"]["throttle"] is None
        _, err_bytes = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 0, err_bytes
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (await client.count(target, exact=True)).count == 80


async def merged_header(proxy: RunningProxy, logical: str) -> str:
    body = {"query": {"text": "document 3 v0", "model": A.id}, "limit": 5, "with_payload": True}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{proxy.rest_url}/collections/{logical}/points/query", json=body) as resp:
            assert resp.status == 200, await resp.text()
            assert len((await resp.json())["result"]["points"]) == 5
            return resp.headers[MERGE_HEADER]


@pytest.mark.parametrize("lookup", ["ids", "exact"])
async def test_plan_lookup_mode_reaches_merged_reads_and_status(
        switchyard: RunningProxy, world: Any, prefix: str, lookup: str) -> None:  # noqa: F811
    client, store = world
    logical = await source(client, store, prefix, 40)
    mid = await plan(switchyard, logical, *(("--lookup", lookup) if lookup == "ids" else ()))
    assert f"(lookup {lookup})" in await status_text(switchyard, mid)
    code, _, err = await cli("migrate", "read-mode", mid, "merged", "--url", switchyard.rest_url)
    assert code == 0, err
    header = await merged_header(switchyard, logical)
    assert header.endswith(f"; lookup={lookup}"), header


async def test_grpc_plan_and_throttle_keep_unthrottled_apart_from_paused(
        switchyard: RunningProxy, world: Any, prefix: str) -> None:  # noqa: F811
    import grpc

    from switchyard.proxy._gen.switchyard.v1 import admin_pb2 as pb
    from switchyard.proxy._gen.switchyard.v1 import admin_pb2_grpc as pb_grpc

    client, store = world
    unset, zero = await source(client, store, prefix, 5), await source(client, store, prefix + "z", 5)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{switchyard.grpc_port}") as channel:
        stub = pb_grpc.AdminStub(channel)
        plain = await stub.Plan(pb.PlanRequest(logical=unset, to_model=B.id))
        paused = await stub.Plan(pb.PlanRequest(logical=zero, to_model=B.id, throttle=0, lookup="ids"))
        assert plain.result["migration"]["throttle"] is None and plain.result["migration"]["lookup"] == "exact"
        assert paused.result["migration"]["throttle"] == 0 and paused.result["migration"]["lookup"] == "ids"
        mid = str(plain.result["migration"]["id"])
        with pytest.raises(grpc.aio.AioRpcError) as err:  # neither a rate nor `unthrottled`
            await stub.Throttle(pb.ThrottleRequest(id=mid))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
        set_zero = await stub.Throttle(pb.ThrottleRequest(id=mid, points_per_second=0))
        assert set_zero.result["migration"]["throttle"] == 0
        lifted = await stub.Throttle(pb.ThrottleRequest(id=mid, unthrottled=True))
        assert lifted.result["migration"]["throttle"] is None
    m = Migration.from_envelope(await store.require(Migration.KIND, mid))
    assert m.throttle is None and [e.action for e in m.history][-2:] == ["throttle:0", "throttle:unthrottled"]
