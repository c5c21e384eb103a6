"""The proxy's periodically written records (hot-document counts, the shadow query sample),
against the session's upstream as the state store: what is written, under which key, and when."""

from __future__ import annotations

import asyncio
from typing import Any

from switchyard.proxy.dataplane import hot_docs, query_sample
from switchyard.proxy.dataplane.hot_counts import HotCounts
from switchyard.proxy.dataplane.query_sample import QuerySamples
from switchyard.proxy.state.store import StateStore


async def _written(task: asyncio.Task[None] | None) -> None:
    assert task is not None
    await task


async def test_hot_counts_wait_an_interval_and_the_query_sample_is_written_at_once(upstream: Any, prefix: str) -> None:
    store = StateStore.connect(upstream.rest_url)
    hot, samples = HotCounts(store, "p1", every=3600), QuerySamples(store, "p1", every=3600)
    mid = f"{prefix}flushed"
    try:
        hot.record(mid, ["7", "7", "9"])
        assert hot._task is None  # within the first interval: nothing written yet
        samples.record(mid, ["how do I sort a list?", "x" * (query_sample.MAX_CHARS + 1)])
        await _written(samples._task)  # the first change goes out at once
        env = await store.require(query_sample.KIND, f"{mid}/p1")
        assert env.data["texts"] == ["how do I sort a list?"] and samples.entry(mid).changes == 0
        samples.record(mid, ["a second question"])
        assert samples._task is not None and samples._task.done()  # no second write in the interval
        await hot.aclose()
        await samples.aclose()  # closing writes what changed since
        counts = (await store.require(hot_docs.KIND, f"{mid}/p1")).data
        assert hot_docs.HeavyHitters.from_dict(counts).counts == {"7": 2, "9": 1}
        assert (await store.require(query_sample.KIND, f"{mid}/p1")).data["texts"] == [
            "how do I sort a list?", "a second question"]
        assert set(await query_sample.sampled(store, mid, 5)) == {"how do I sort a list?", "a second question"}
    finally:
        await store.close()
