"""Hot documents first (``--order hot``, issue 15): the plan's hot partition, picked before any
id range, and a backfill killed at random moments still embeds every point once (up to the
batch in flight per kill) and verifies clean -- with the counts there when the plan is made,
and with counts flushed only after the first kill (a late hot partition appended to the plan
while daemons are killed and restarted). Real daemon subprocesses, SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from backfill_helpers import new_store, setup_migration
from switchyard.backfill import partitions as parts
from switchyard.backfill.partitions import Lease, Partition
from switchyard.backfill.pipeline import Copier
from switchyard.backfill.verify import verify
from switchyard.proxy.dataplane.hot_docs import KIND, HeavyHitters
from switchyard.proxy.migration.record import Migration

ROOT = Path(__file__).resolve().parents[1]
N, KILLS, BATCH = 3000, 3, 50


def test_pick_takes_the_hot_partition_first_and_it_round_trips() -> None:
    hot = parts.hot_partition(2, ["17", "3", "5f2a3c4e-0000-4000-8000-000000000001"])
    assert hot.ids == (17, 3, "5f2a3c4e-0000-4000-8000-000000000001") and (hot.lo, hot.hi) == (0, 3)
    assert Partition.from_dict(hot.to_dict()) == hot and hot.start() == 0
    leases = [Lease("m", p) for p in [*parts.split(100, 2, 1), parts.hot_partition(3, ["1"])]]
    leases = [Lease("m", lp.partition) for lp in leases]
    assert parts.pick(leases, "me", 0.0).partition.kind == parts.HOT  # type: ignore[union-attr]
    done = [lp if lp.partition.kind != parts.HOT else Lease("m", lp.partition, done=True) for lp in leases]
    assert parts.pick(done, "me", 0.0).partition.kind != parts.HOT  # type: ignore[union-attr]


def _start(upstream: Any, store_name: str, mid: str, keys_file: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}", "BACKFILL_KEYS_FILE": str(keys_file)}
    return subprocess.Popen(
        [sys.executable, "-m", "switchyard.proxy", "--log-level", "WARNING", "backfill", mid, "--url",
         upstream.rest_url, "--state-collection", store_name, "--once", "--owner", "hot",
         "--batch-size", str(BATCH), "--concurrency", "1", "--text-fetcher", "hot_helpers:keyed_texts",
         "--hot-recheck", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _copied(store: Any, mid: str) -> int:
    return sum(int(e.data.get("copied") or 0) for e in await store.list("lease") if e.key.startswith(mid))


async def _flush_counts(store: Any, mid: str, hot_ids: list[str]) -> None:
    sketch = HeavyHitters()
    for rank, key in enumerate(hot_ids):
        sketch.offer([key], weight=len(hot_ids) - rank)  # hottest first
    await store.upsert(KIND, f"{mid}/proxy-1", sketch.to_dict())


@pytest.mark.parametrize("late", [False, True], ids=["counts-before-plan", "counts-after-plan"])
async def test_hot_order_covers_every_point_once_across_kills(upstream: Any, prefix: str, tmp_path: Path,
                                                              late: bool) -> None:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False, timeout=30)
    store = new_store(client)
    rng = random.Random(11)
    keys_file = tmp_path / "keys"
    try:
        mid = await setup_migration(client, store, prefix, list(range(N)))
        hot_ids = [str(i) for i in rng.sample(range(N), 240)]
        if not late:
            await _flush_counts(store, mid, hot_ids)
        kills, deadline, flushed_late = 0, time.monotonic() + 240, False
        while kills < KILLS and time.monotonic() < deadline:
            proc = _start(upstream, store.collection, mid, keys_file)
            try:
                before = await _copied(store, mid)
                while await _copied(store, mid) == before and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, 0.3))
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                proc.wait(timeout=10)
            if late and kills >= 1 and await store.get(parts.PLAN_KIND, mid) is not None:
                await _flush_counts(store, mid, hot_ids)  # once, after the plan: traffic arrives
                late = False
                flushed_late = True
        proc = _start(upstream, store.collection, mid, keys_file)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        plan = await store.require(parts.PLAN_KIND, mid)
        assert plan.data["order"] == "hot", plan.data.get("order_reason")
        hot_parts = [p["ids"] for p in plan.data["partitions"] if p["kind"] == parts.HOT]
        in_hot = [str(x) for ids in hot_parts for x in ids]
        assert len(in_hot) == len(set(in_hot)) and set(in_hot) <= set(hot_ids)  # no id in two
        m = Migration.from_envelope(await store.require(Migration.KIND, mid))
        found, _ = await verify(Copier(client, m, {}, None, None), store, m, resume=False)  # type: ignore[arg-type]
        assert found.clean and found.source == N, found.counts()
        prepared = [k for line in keys_file.read_text().splitlines() for k in line.split()]
        # every point prepared at least once; twice only for a batch in flight at a kill
        assert set(prepared) == {str(i) for i in range(N)}
        assert N <= len(prepared) <= N + kills * BATCH, (len(prepared), kills)
        if flushed_late:  # the plan was made in id order; the late partition says why it came
            assert plan.data["late_hot"] and in_hot, plan.data
            assert "more ids from counts flushed after the plan" in plan.data["order_reason"]
        else:  # the hot ids came first, hottest first, before any other id
            first = list(dict.fromkeys(prepared))[: len(hot_ids)]
            assert set(first) == set(hot_ids) and len(hot_parts) == 1
    finally:
        await client.delete_collection(store.collection)
        await client.close()
