"""The embedded engine's admission: reads overlap, writes run alone, arrival order holds.

Table tests of :class:`Admission` (who is admitted when), and the real :class:`Engine`
running two reads at once on its threads while a write waits for them.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from qdrant_client.http import models

from switchyard.proxy.embedded.engine import READ_METHODS, Admission, Engine


async def _admit_in_order(admission: Admission, kinds: str) -> list[asyncio.Task[None]]:
    """Start one acquirer per letter (``r`` read, ``w`` write) in order; let them settle."""
    tasks = [asyncio.ensure_future(admission.acquire(k == "w")) for k in kinds]
    await settle()
    return tasks


async def settle() -> None:
    """Let every runnable task run until it waits again."""
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    "kinds, admitted",
    [
        ("rrr", "111"),  # reads overlap
        ("rw", "10"),  # a write waits for an earlier read
        ("wr", "10"),  # a read waits for an earlier write
        ("ww", "10"),  # writes one at a time
        ("rrwr", "1100"),  # a read behind a waiting write does not overtake it
        ("wrrw", "1000"),
    ],
)
async def test_admission_table(kinds: str, admitted: str) -> None:
    admission = Admission()
    tasks = await _admit_in_order(admission, kinds)
    assert "".join("1" if t.done() else "0" for t in tasks) == admitted
    for t in tasks:
        t.cancel()


async def test_admission_hands_over_in_arrival_order() -> None:
    admission = Admission()
    tasks = await _admit_in_order(admission, "rrwrr")
    admission.release(False)
    await settle()
    assert not tasks[2].done()  # one read still runs
    admission.release(False)
    await settle()
    assert tasks[2].done() and not tasks[3].done()  # the write, alone
    admission.release(True)
    await settle()
    assert tasks[3].done() and tasks[4].done()  # both later reads together


async def test_cancelled_waiter_does_not_block_the_queue() -> None:
    admission = Admission()
    tasks = await _admit_in_order(admission, "rwr")
    tasks[1].cancel()  # the waiting write gives up
    await settle()
    assert tasks[2].done()  # the read behind it no longer waits for it
    admission.release(False)
    admission.release(False)
    later = await _admit_in_order(admission, "w")
    assert later[0].done()  # nothing leaked: a write is admitted once the reads left


def test_every_read_method_exists_on_the_local_engine() -> None:
    from qdrant_client.local.qdrant_local import QdrantLocal

    assert all(callable(getattr(QdrantLocal, name, None)) for name in READ_METHODS)


async def test_engine_runs_reads_together_and_a_write_alone() -> None:
    engine = Engine(readers=2)
    try:
        await engine.call("create_collection", "c",
                          vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
        both = threading.Barrier(2, timeout=5)
        order: list[str] = []

        def read(tag: str) -> str:
            both.wait()  # raises BrokenBarrierError unless the other read runs at the same time
            order.append(tag)
            return tag

        def write() -> None:
            order.append("write")

        reads = [asyncio.ensure_future(engine.run(lambda t=t: read(t), read=True)) for t in "ab"]
        await asyncio.sleep(0)
        w = asyncio.ensure_future(engine.run(write))
        assert sorted(await asyncio.gather(*reads)) == ["a", "b"]
        await w
        assert order[-1] == "write" and sorted(order[:2]) == ["a", "b"]
        count = await engine.call("count", "c")
        assert count.count == 0
    finally:
        engine.close()


async def test_keyword_scroll_sees_every_write() -> None:
    """The engine's exact-match scroll index is dropped by each write: never a stale answer."""
    engine = Engine(readers=2)
    flt = models.Filter(should=[models.FieldCondition(key="doc", match=models.MatchAny(any=["x", "y"]))])

    async def both() -> tuple[list[object], list[object]]:
        fast, _ = await engine.call("scroll", "c", scroll_filter=flt, limit=100)
        slow, _ = await engine.run(lambda: engine.local.scroll("c", scroll_filter=flt, limit=100), read=True)
        assert fast == slow
        return [r.id for r in fast], slow

    try:
        await engine.call("create_collection", "c",
                          vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
        await engine.call("upsert", "c", [models.PointStruct(id=i, vector=[1.0, 0.0], payload={"doc": d})
                                          for i, d in enumerate("xyzx")])
        assert (await both())[0] == [0, 1, 3]
        await engine.call("set_payload", "c", {"doc": "z"}, points=[0])
        assert (await both())[0] == [1, 3]
        await engine.call("delete", "c", models.PointIdsList(points=[1]))
        assert (await both())[0] == [3]
        await engine.call("upsert", "c", [models.PointStruct(id=7, vector=[0.0, 1.0], payload={"doc": ["q", "y"]})])
        assert (await both())[0] == [3, 7]
        await engine.call("overwrite_payload", "c", {}, points=[3])
        assert (await both())[0] == [7]
    finally:
        engine.close()
