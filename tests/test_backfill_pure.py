"""Pure parts of the backfill as tables: partitions and leases, throttle, progress, reservoir,
the verify merge-join."""

from __future__ import annotations

import math
import random
import uuid

import pytest

from switchyard.backfill import partitions as parts
from switchyard.backfill.partitions import Lease, Partition
from switchyard.proxy.migration.progress import RateWindow, bar, eta, line
from switchyard.backfill.samples import Reservoir
from switchyard.backfill.throttle import Backoff, TokenBucket, latency_signal, operator_rate
from switchyard.backfill.verify import Diff, join_page, order_key


def u(n: int) -> str:
    return str(uuid.UUID(int=n))


def test_split_covers_every_id_exactly_once() -> None:
    plan = parts.split(999, 4, 3)
    assert [p.kind for p in plan] == ["int"] * 4 + ["uuid"] * 3
    assert [p.index for p in plan] == list(range(7))
    for pid in [0, 1, 249, 250, 999, 1000, 2**63, 2**64 - 1, u(0), u(2**127), u(2**128 - 1)]:
        assert sum(p.contains(pid) for p in plan) == 1, pid
    assert plan[3].hi == parts.INT_END  # ids added beyond the max are covered


@pytest.mark.parametrize(("max_id", "n", "expected"), [(None, 4, 1), (0, 4, 1), (2, 8, 3), (10**6, 8, 8)])
def test_split_never_makes_empty_int_ranges(max_id: int | None, n: int, expected: int) -> None:
    ints = [p for p in parts.split(max_id, n, 1) if p.kind == "int"]
    assert len(ints) == expected and all(p.lo < p.hi for p in ints)


TRUNCATE = [
    (Partition(0, "int", 0, 10), [1, 5, 9], 3),
    (Partition(0, "int", 0, 10), [8, 9, 10, 11], 2),
    (Partition(0, "int", 0, 10), [9, u(1)], 1),
    (Partition(1, "uuid", 0, 2**127), [u(5), u(2**127 - 1), u(2**127)], 2),
    (Partition(1, "uuid", 0, 2**127), [], 0),
]


@pytest.mark.parametrize(("p", "ids", "n"), TRUNCATE)
def test_truncate_stops_at_the_partition_end(p: Partition, ids: list, n: int) -> None:
    assert parts.truncate(p, ids) == n


def test_lease_claim_pick_advance() -> None:
    p0, p1 = Partition(0, "int", 0, 10), Partition(1, "int", 10, 20)
    free, held = Lease("m", p0), parts.claim(Lease("m", p1), "other", now=100.0, ttl=10.0)
    assert parts.claimable(free, "me", 100.0) and not parts.claimable(held, "me", 105.0)
    assert parts.claimable(held, "me", 110.0)  # expired
    assert parts.claimable(held, "other", 105.0)  # our own
    assert parts.pick([free, held], "me", 105.0) == free
    assert parts.pick([free, held], "other", 105.0) == held  # own first
    moved = parts.advance(parts.claim(free, "me", 100.0, 10.0), 7, 7, now=101.0, ttl=10.0)
    assert (moved.cursor, moved.done, moved.copied, moved.expires) == (7, False, 7, 111.0)
    assert moved.resume_from() == 7 and free.resume_from() == 0
    finished = parts.advance(moved, None, 3, 102.0, 10.0)
    assert finished.done and finished.copied == 10 and not parts.claimable(finished, "me", 1e9)
    assert Lease.from_dict(finished.to_dict()) == finished
    assert Lease.from_dict(Lease("m", Partition(5, "uuid", 3, 2**128)).to_dict()).partition.hi == 2**128


OPERATOR = [
    (None, False, math.inf, ""),
    (None, True, 0.0, "paused by operator"),
    (200.0, False, 200.0, "throttled by operator to 200 points/s"),
    (0.0, False, 0.0, "throttle 0 (paused) by operator"),
    (50.0, True, 0.0, "paused by operator"),
]


@pytest.mark.parametrize(("throttle", "paused", "rate", "reason"), OPERATOR)
def test_operator_rate(throttle: float | None, paused: bool, rate: float, reason: str) -> None:
    assert operator_rate(throttle, paused) == (rate, reason)


@pytest.mark.parametrize("batch", [1, 7, 64, 500])
def test_token_bucket_long_run_rate_is_exact_within_one_batch(batch: int) -> None:
    bucket, now, sent = TokenBucket(rate=200.0), 0.0, 0
    while now < 20.0:
        wait = bucket.delay(now)
        if wait > 0:
            now += wait
            continue
        bucket.take(batch, now)
        sent += batch
    assert 0 <= sent - 200 * 20 <= batch


def test_token_bucket_pause_and_unthrottled() -> None:
    bucket = TokenBucket()
    assert bucket.delay(0.0) == 0.0
    bucket.take(10**6, 0.0)
    assert bucket.delay(0.0) == 0.0
    bucket.set_rate(0.0)
    assert math.isinf(bucket.delay(5.0))
    bucket.set_rate(10.0)
    bucket.take(10, 5.0)
    assert bucket.delay(5.0) == pytest.approx(1.0) and bucket.delay(7.0) == 0.0


def test_backoff_halves_and_recovers_with_reason() -> None:
    b = Backoff()
    b.signal("embedder 429")
    b.signal("embedder 429")
    assert b.factor == 0.25 and b.reason == "embedder 429"
    for _ in range(10):
        b.success()
    assert b.factor == 1.0 and b.reason == ""
    assert latency_signal(0.1, 0.5) is None and latency_signal(0.1, 0.0) is None
    assert "latency 900 ms" in str(latency_signal(0.9, 0.5))


def test_progress_rate_eta_line() -> None:
    w = RateWindow(window=10.0)
    for t in range(0, 30):
        w.observe(float(t), t * 100)
    assert w.rate() == pytest.approx(100.0)
    assert eta(500, 1500, 100.0) == 10.0 and eta(10, 10, 0.0) == 0.0 and eta(1, 10, 0.0) is None
    assert bar(1, 4, width=4) == "[#---]  25.0%"
    text = line("m1", 500, 1500, 100.0, "throttled", "embedder 429")
    assert "500/1500" in text and "100 points/s" in text and "ETA 0m10s" in text and "(embedder 429)" in text
    done = line("m1", 1345, 1876, 0.0, "done", "")  # the rest came through mirrored writes
    assert "100.0%" in done and "1876/1876 points (1345 written by the backfill, 531 already current)" in done
    assert line("m1", 1876, 1876, 0.0, "done", "").count("1876/1876 points,") == 1


def test_reservoir_is_bounded_and_uniform_enough() -> None:
    counts = [0] * 100
    for seed in range(200):
        r = Reservoir(capacity=10, rng=random.Random(seed))
        for i in range(100):
            r.offer({"id": i})
        assert len(r.items) == 10 and r.seen == 100
        for item in r.items:
            counts[item["id"]] += 1
    assert sum(counts[:50]) == pytest.approx(sum(counts[50:]), rel=0.25)


JOIN = [
    ([(1, "a"), (2, "b"), (4, "d")], [(1, "a"), (3, "c"), (4, "x")], [2], [3], [4]),
    ([], [(1, "a")], [], [1], []),
    ([(1, "a")], [], [1], [], []),
    ([(9, "a"), (u(1), "b")], [(u(1), "b"), (u(2), "c")], [9], [u(2)], []),
    ([(1, "a")], [(1, None)], [], [], [1]),
]


@pytest.mark.parametrize(("src", "tgt", "missing", "extra", "stale"), JOIN)
def test_join_page(src: list, tgt: list, missing: list, extra: list, stale: list) -> None:
    d = Diff()
    join_page(src, tgt, d)
    assert (d.missing, d.extra, d.stale) == (missing, extra, stale)
    assert (d.source, d.target) == (len(src), len(tgt)) and d.clean == (not (missing or extra or stale))
    assert Diff.from_dict(d.to_dict()).counts() == d.counts()


def test_order_key_puts_ints_before_uuids() -> None:
    ids = [u(5), 10, u(1), 2**63]
    assert sorted(ids, key=order_key) == [10, 2**63, u(1), u(5)]


class _Copier:
    """The pipeline's seam: batches of 10 ids from ``lo``, nothing really written."""

    async def scroll(self, p: Partition, cursor: int, limit: int) -> object:
        from switchyard.backfill.pipeline import Batch

        nxt = cursor + 10
        return Batch([], nxt if nxt < p.hi else None)

    async def prepare(self, batch: object) -> object:
        from switchyard.backfill.pipeline import Prepared

        return Prepared(batch, [], {})  # type: ignore[arg-type]

    async def write(self, prep: object) -> object:
        from switchyard.backfill.pipeline import Stats

        return Stats(written=10)


@pytest.mark.parametrize("fail_at", [None, 0, 2])
async def test_a_shared_batch_budget_is_given_back_however_a_partition_ends(fail_at: int | None) -> None:
    """Partitions copied at once share one semaphore: a partition that fails (a lost lease at
    its Nth checkpoint) must return every slot it holds, or the daemon would stall later."""
    import asyncio

    from switchyard.backfill.pipeline import PartitionRun, run_partition

    slots = asyncio.Semaphore(2)
    checkpoints: list[object] = []
    scrolled: list[bool] = []

    async def checkpoint(cursor: object, stats: object) -> None:
        if fail_at is not None and len(checkpoints) == fail_at:
            raise RuntimeError("lease lost")
        checkpoints.append(cursor)

    async def gate(n: int) -> None:
        return None

    run = PartitionRun(lambda: 10, 2, gate, checkpoint, slots=slots, on_scrolled=lambda: scrolled.append(True))
    p = Partition(0, parts.INT, 0, 50)
    if fail_at is None:
        await run_partition(_Copier(), p, 0, run)  # type: ignore[arg-type]
        assert checkpoints == [10, 20, 30, 40, None] and scrolled == [True]
    else:
        with pytest.raises(BaseExceptionGroup):
            await run_partition(_Copier(), p, 0, run)  # type: ignore[arg-type]
        assert len(checkpoints) == fail_at
    assert slots._value == 2  # every slot back
