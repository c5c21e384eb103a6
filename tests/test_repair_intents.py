"""The repair path's parts: the primary-outcome table, the batched and bounded repair log (on a
real state store), and the write-ahead intent log (real files, real ``flock``, real processes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from switchyard.proxy.dataplane import repair_log
from switchyard.proxy.dataplane.intents import IntentLog, adopt, parse
from switchyard.proxy.dataplane.primary_outcome import Level, after_primary, status_of
from switchyard.proxy.dataplane.repair_spool import COARSE, RepairLog, TokenBucket, stored_id
from switchyard.proxy.errors import SwitchyardError
from switchyard.proxy.state.store import StateStore
from switchyard.proxy.wire import GrpcReply, RestReply

K = frozenset

# (status, kinds) -> level: the whole decision, as a table
OUTCOMES = [
    (200, K({"upsert"}), Level.MIRROR),
    (202, K({"delete"}), Level.MIRROR),
    (401, K({"upsert"}), Level.NOTHING),
    (403, K({"batch", "upsert", "delete"}), Level.NOTHING),
    (400, K({"upsert"}), Level.NOTHING),
    (422, K({"set_payload"}), Level.NOTHING),
    (400, K({"batch", "upsert"}), Level.REREAD),
    (422, K({"batch", "delete"}), Level.REREAD),
    (404, K({"set_payload"}), Level.REREAD),
    (404, K({"overwrite_payload"}), Level.REREAD),
    (404, K({"delete_payload"}), Level.REREAD),
    (404, K({"clear_payload"}), Level.REREAD),
    (404, K({"update_vectors"}), Level.REREAD),
    (404, K({"delete_vectors"}), Level.REREAD),
    (404, K({"batch", "upsert"}), Level.REREAD),
    (404, K({"upsert"}), Level.NOTHING),
    (404, K({"delete"}), Level.NOTHING),
    (409, K({"upsert"}), Level.NOTHING),
    (413, K({"upsert"}), Level.NOTHING),
    (429, K({"upsert"}), Level.NOTHING),
    (408, K({"upsert"}), Level.RECORD),
    (500, K({"upsert"}), Level.RECORD),
    (503, K({"delete"}), Level.RECORD),
    (504, K({"set_payload"}), Level.RECORD),
    (None, K({"upsert"}), Level.RECORD),
    (302, K({"upsert"}), Level.RECORD),
]


@pytest.mark.parametrize("status,kinds,level", OUTCOMES)
def test_after_primary_table(status: int | None, kinds: frozenset[str], level: Level) -> None:
    verdict = after_primary(status, kinds)
    assert verdict.level is level
    assert verdict.reason  # every verdict says why


@pytest.mark.parametrize("reply,status", [
    (RestReply(404, (), b""), 404), (GrpcReply(b"", code="OK"), 200),
    (GrpcReply(b"", code="UNAUTHENTICATED"), 401), (GrpcReply(b"", code="NOT_FOUND"), 404),
    (GrpcReply(b"", code="DEADLINE_EXCEEDED"), None), (GrpcReply(b"", code="CANCELLED"), None),
])
def test_status_of_both_protocols(reply: Any, status: int | None) -> None:
    assert status_of(reply) == status


def test_token_bucket_schedule() -> None:
    b = TokenBucket(rate=10, burst=20)
    assert b.take(20, 0.0) and not b.take(1, 0.0)
    assert not b.take(11, 1.0) and b.take(10, 1.0)
    assert b.take(20, 100.0)  # never more than the burst saved up
    assert not b.take(1, 100.0)


@pytest.mark.parametrize("pid,stored", [(5, 5), ("ab", "ab"), ((1 << 64) - 1, (1 << 64) - 1),
                                        (1 << 64, str(1 << 64)), (-1, "-1"), (1.5, "1.5"), (True, "True")])
def test_stored_id_keeps_every_id_writable(pid: Any, stored: Any) -> None:
    assert stored_id(pid) == stored


@pytest.fixture
async def store(upstream: Any) -> Any:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
    name = f"_switchyard_test_{uuid.uuid4().hex[:8]}"
    st = StateStore(client, collection=name)
    yield st
    await client.delete_collection(name)
    await client.close()


async def test_concurrent_records_share_store_calls(store: StateStore, tmp_path: Path) -> None:
    calls = 0
    real = store.upsert_many

    async def counting(records: Any) -> None:
        nonlocal calls
        calls += 1
        await real(records)

    store.upsert_many = counting  # type: ignore[method-assign]
    log = RepairLog(store, tmp_path / "spool.jsonl", rate=10_000, burst=10_000)
    await asyncio.gather(*(log.record("m1", [i], [], "test") for i in range(200)))
    assert await repair_log.size(store, "m1") == 200
    assert calls < 20  # group commit: 200 records in a handful of store calls


async def test_flood_past_the_bound_becomes_one_coarse_entry(store: StateStore, tmp_path: Path) -> None:
    log = RepairLog(store, tmp_path / "spool.jsonl", rate=0.001, burst=50)
    for start in range(0, 500, 25):
        await asyncio.gather(*(log.record("m2", [i], [], "test") for i in range(start, start + 25)))
    await log.record("m3", [1], [], "another migration is not affected")
    size = await repair_log.size(store, "m2")
    assert size <= 52  # the burst, plus the coarse entry
    coarse = await repair_log.coarse(store, "m2")
    assert coarse is not None and coarse.filter == {} and "needs a verify" in coarse.reason
    assert coarse.dropped >= 450 and coarse.since > 0
    entries = await repair_log.pending(store, "m2")
    assert any(e.key == f"m2/{COARSE}" for e in entries)
    assert await repair_log.size(store, "m3") == 1 and await repair_log.coarse(store, "m3") is None


async def test_store_down_spools_then_replays(tmp_path: Path) -> None:
    dead = StateStore(AsyncQdrantClient(url="http://127.0.0.1:9", check_compatibility=False, timeout=1))
    log = RepairLog(dead, tmp_path / "spool.jsonl")
    await log.record("m4", [1, 2], [{"must": []}], "test")
    lines = (tmp_path / "spool.jsonl").read_bytes().splitlines()
    assert len(lines) == 3
    with pytest.raises(SwitchyardError):
        await log.replay()
    await dead.close()


async def test_intents_group_commit_and_clear(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, "p1")
    log.open()
    seqs = await asyncio.gather(*(log.begin("m", [i], []) for i in range(100)))
    assert len(set(seqs)) == 100
    assert log.syncs < 100  # one sync served many writers
    for s in seqs[:60]:
        log.clear(s)
    pending = parse(log.path.read_bytes(), "p1")
    assert sorted(i.ids[0] for i in pending) == list(range(60, 100))
    log.close()
    assert log.path.exists()  # pending intents survive a clean stop


async def test_second_live_owner_is_refused(tmp_path: Path) -> None:
    first = IntentLog(tmp_path, "same")
    first.open()
    code = textwrap.dedent(f"""
        from switchyard.proxy.dataplane.intents import IntentLog
        from switchyard.proxy.errors import SwitchyardError
        try:
            IntentLog({str(tmp_path)!r}, "same").open(wait=0.2)
        except SwitchyardError as exc:
            print("refused", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("refused") and "same" in out
    first.close()


async def test_dead_owner_intents_become_repair_records(store: StateStore, tmp_path: Path) -> None:
    """A process begins intents and is SIGKILLed; a new owner (another id) adopts them."""
    code = textwrap.dedent(f"""
        import asyncio, os, signal
        from switchyard.proxy.dataplane.intents import IntentLog
        async def go():
            log = IntentLog({str(tmp_path)!r}, "victim")
            log.open()
            a = await log.begin("m5", [1, 2], [])
            await log.begin("m5", [3], [{{"must": [{{"key": "n", "match": {{"value": 1}}}}]}}])
            await log.begin("m5", [1 << 64], [])
            log.clear(a)
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(go())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9
    repair = RepairLog(store, tmp_path / "repair-spool-heir.jsonl")
    heir = IntentLog(tmp_path, "heir")
    heir.open()
    assert await adopt(heir, repair) == 2
    entries = await repair_log.pending(store, "m5")
    assert sorted(str(e.point_id) for e in entries if e.point_id is not None) == ["18446744073709551616", "3"]
    assert [e.filter for e in entries if e.point_id is None] == [{"must": [{"key": "n", "match": {"value": 1}}]}]
    assert all("victim" in e.reason for e in entries)
    assert not (tmp_path / "intents-victim.jsonl").exists() and heir.pending() == []
    assert await adopt(heir, repair) == 0  # once
    heir.close()


async def test_restart_with_same_identity_finds_its_intents(store: StateStore, tmp_path: Path) -> None:
    first = IntentLog(tmp_path, "me")
    first.open()
    await first.begin("m6", [7], [])
    for fd in (first._lock_fd, first._fd):  # as a dead process would: lock gone, files stay
        assert fd is not None
        os.close(fd)
    first._lock_fd = first._fd = None
    again = IntentLog(tmp_path, "me")
    again.open()
    assert [i.ids for i in again.leftover] == [(7,)]
    assert await adopt(again, RepairLog(store, tmp_path / "repair-spool-me.jsonl")) == 1
    assert [e.point_id for e in await repair_log.pending(store, "m6")] == [7]
    again.close()


def _recording_writes(order: Any, hold: float) -> tuple[Any, list[str], asyncio.Event]:
    """``write(name, ids, exclusive=False, hold=hold)`` holding ``ids`` in ``order`` and logging
    ``name+`` on entry and ``name-`` on exit in ``events``; the event is set when ``a`` enters."""
    events: list[str] = []
    a_in = asyncio.Event()

    async def write(name: str, ids: list[Any], exclusive: bool = False, hold: float = hold) -> None:
        async with order.hold("m", ids, exclusive):
            events.append(f"{name}+")
            if name == "a":
                a_in.set()
            await asyncio.sleep(hold)
            events.append(f"{name}-")

    return write, events, a_in


async def test_write_order_serialises_same_ids_and_filters() -> None:
    from switchyard.proxy.dataplane.write_order import WriteOrder

    order = WriteOrder()
    write, events, first_in = _recording_writes(order, hold=0.02)
    a = asyncio.ensure_future(write("a", [1, 2]))
    await first_in.wait()
    b = asyncio.ensure_future(write("b", [2]))        # same id: after a
    c = asyncio.ensure_future(write("c", [3]))        # another id: alongside a
    await asyncio.sleep(0)
    f = asyncio.ensure_future(write("f", [], True))   # a filter: after a and c, alone
    await asyncio.sleep(0)
    d = asyncio.ensure_future(write("d", [4]))        # came after the filter: waits for it
    await asyncio.gather(a, b, c, f, d)
    assert events.index("c+") < events.index("a-")
    assert events.index("b+") > events.index("a-")
    fi, fo = events.index("f+"), events.index("f-")
    assert events[fi + 1] == "f-" and fo < events.index("d+")
    assert all(events.index(f"{x}-") < fi for x in ("a", "c"))
    assert order.busy == 0


async def test_write_order_overlapping_writes_wait_only_for_what_they_share() -> None:
    """A write some of whose ids are held takes them one by one in sorted order (the slow path
    beside the one-update fast path): it holds nothing it waits behind, so a third write of an
    id it has not reached goes alongside, and crossing id lists never wait in a cycle."""
    from switchyard.proxy.dataplane.write_order import WriteOrder

    order = WriteOrder()
    write, events, a_in = _recording_writes(order, hold=0.0)
    a = asyncio.ensure_future(write("a", [1, 2], hold=0.05))
    await a_in.wait()
    b = asyncio.ensure_future(write("b", [3, 2]))   # shares 2 with a: waits, holding nothing
    await asyncio.sleep(0)
    c = asyncio.ensure_future(write("c", [3]))      # 3 is free while b waits for 2
    crossing = [asyncio.ensure_future(write(f"x{k}", ids, hold=0.01)) for k, ids in enumerate(([5, 6], [6, 5]) * 3)]
    await asyncio.wait_for(asyncio.gather(a, b, c, *crossing), 5)
    assert events.index("c-") < events.index("a-") < events.index("b+")
    assert order.busy == 0


async def test_write_order_cancelled_waiter_leaks_nothing() -> None:
    from switchyard.proxy.dataplane.write_order import WriteOrder

    order = WriteOrder()
    async with order.hold("m", [1], False):
        waiter = asyncio.ensure_future(_enter(order, [1]))
        filt = asyncio.ensure_future(_enter(order, [], True))
        await asyncio.sleep(0.01)
        waiter.cancel()
        filt.cancel()
        await asyncio.gather(waiter, filt, return_exceptions=True)
    await asyncio.wait_for(_enter(order, [1]), 1)
    await asyncio.wait_for(_enter(order, [], True), 1)
    assert order.busy == 0


async def test_write_order_hands_an_id_on_in_arrival_order_even_to_a_cancelled_heir() -> None:
    from switchyard.proxy.dataplane.write_order import WriteOrder

    order, seen = WriteOrder(), []

    async def write(name: str) -> None:
        async with order.hold("m", [5, 1], False):
            seen.append(name)
            await asyncio.sleep(0)

    async with order.hold("m", [1], False):
        waiters = [asyncio.ensure_future(write(n)) for n in ("x", "y", "z")]
        await asyncio.sleep(0.01)
        assert seen == [] and order.busy == 1  # ids go in sorted order: all three wait for id 1
    waiters[0].cancel()  # id 1 was just handed to x: cancelled now, x must pass it on
    await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 2)
    assert seen == ["y", "z"]
    await asyncio.wait_for(_enter(order, [1, 5]), 1)
    assert order.busy == 0


async def _enter(order: Any, ids: list[Any], exclusive: bool = False) -> None:
    async with order.hold("m", ids, exclusive):
        pass


async def test_a_batch_that_cannot_be_written_answers_every_waiter(store: StateStore, tmp_path: Path) -> None:
    """Neither the store nor the spool can take a batch: its waiters get the error (their
    intents stay pending), none waits forever, and the log keeps working afterwards."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool's directory should be")
    log = RepairLog(store, blocker / "spool.jsonl")
    unencodable = {"must": [{"key": "n", "match": {"value": object()}}]}  # no JSON for it
    # the first record's write is in flight while the next two queue: they share one batch
    outcomes = await asyncio.wait_for(asyncio.gather(
        log.record("m7", [1], [], "w"), log.record("m7", [], [unencodable], "x"),
        log.record("m7", [2], [], "y"), return_exceptions=True), 30)
    assert outcomes[0] is None
    assert isinstance(outcomes[1], Exception) and isinstance(outcomes[2], Exception)  # answered
    await asyncio.wait_for(log.record("m7", [3], [], "z"), 30)  # the log still works
    assert sorted(e.point_id for e in await repair_log.pending(store, "m7")) == [1, 3]  # type: ignore[type-var]
