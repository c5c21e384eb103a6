"""``strict_enforce.Enforcer``: Qdrant's order of strict-mode checks and what it asks of the
engine, on a fake collection view and a fake clock (no engine, no timing)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from qdrant_client.http import models

from switchyard.proxy.embedded.strict_enforce import Enforcer
from switchyard.proxy.errors import BadRequest, RateLimitExceeded

CITY = models.Filter(must=[models.FieldCondition(key="city", match=models.MatchValue(value="x"))])
P = models.PointStruct


class FakeView:
    def __init__(self, points: int = 0, estimate: int = 1, sizes: tuple[int, int] = (0, 0)) -> None:
        self.points, self.estimated, self.sizes = points, estimate, sizes
        self.asked: list[str] = []

    async def schema(self) -> dict[str, str]:
        self.asked.append("schema")
        return {}

    async def points_count(self) -> int:
        self.asked.append("points_count")
        return self.points

    async def estimate(self, flt: models.Filter) -> int:
        self.asked.append("estimate")
        return self.estimated

    async def storage_sizes(self) -> tuple[int, int]:
        self.asked.append("storage_sizes")
        return self.sizes


def run(enforcer: Enforcer, cfg: models.StrictModeConfig | None, method: str, kw: dict[str, Any],
        view: FakeView, timeout: int | None = None) -> None:
    asyncio.run(enforcer.check("c", cfg, method, kw, timeout, view))


STRICT = models.StrictModeConfig(
    enabled=True, max_query_limit=3, max_timeout=5, search_allow_exact=False,
    unindexed_filtering_retrieve=False, max_points_count=2,
    multivector_config={"m": models.StrictModeMultivector(max_vectors=1)})


@pytest.mark.parametrize(("method", "kw", "timeout", "points", "first", "asked"), [
    # the request's own limits come before its timeout
    ("query_points", {"limit": 9}, 9, 0, '"limit"', []),
    ("query_points", {"limit": 1}, 9, 0, '"timeout"', []),
    # the index check, which needs the schema, comes before exact
    ("query_points", {"limit": 1, "query_filter": CITY,
                      "search_params": models.SearchParams(exact=True)}, None, 0,
     'Index required but not found for "city"', ["schema"]),
    # the points count, which needs a count, before the vector limits
    ("upsert", {"points": [P(id=1, vector={"m": [[1.0], [2.0]]})]}, None, 2,
     "Max points count limit of 2 reached!", ["points_count"]),
    ("upsert", {"points": [P(id=1, vector={"m": [[1.0], [2.0]]})]}, None, 1,
     "Multivector 'm' has a limit of 1 vectors", ["points_count"]),
    # a batch: each query checked, then the timeout once
    ("query_batch", {"batch": [{"limit": 1}, {"limit": 4}]}, 9, 0, '"limit"', []),
])
def test_order(method: str, kw: dict[str, Any], timeout: int | None, points: int, first: str,
               asked: list[str]) -> None:
    view = FakeView(points=points)
    with pytest.raises(BadRequest) as caught:
        run(Enforcer(), STRICT, method, kw, view, timeout)
    assert first in caught.value.message
    assert view.asked == asked


SIZED = models.StrictModeConfig(enabled=True, upsert_max_batchsize=1,
                                max_collection_payload_size_bytes=10, max_points_count=5,
                                multivector_config={"m": models.StrictModeMultivector(max_vectors=1)})


@pytest.mark.parametrize(("method", "kw", "sizes", "points", "first", "asked"), [
    # the batch size first, asking nothing
    ("upsert", {"points": [P(id=1, vector=[1.0])] * 2}, (0, 99), 9, "upsert limit", []),
    # the storage sizes before the points count, both before the vector limits
    ("upsert", {"points": [P(id=1, vector={"m": [[1.0], [2.0]]})]}, (0, 10), 9,
     "Max payload storage size limit", ["storage_sizes", "points_count"]),
    ("upsert", {"points": [P(id=1, vector={"m": [[1.0], [2.0]]})]}, (0, 9), 5,
     "Max points count limit of 5 reached!", ["storage_sizes", "points_count"]),
    ("upsert", {"points": [P(id=1, vector={"m": [[1.0], [2.0]]})]}, (0, 9), 4,
     "Multivector 'm' has a limit of 1 vectors", ["storage_sizes", "points_count"]),
    # a payload write: the payload limit only, no count asked
    ("set_payload", {"payload": {"a": 1}, "points": [1]}, (0, 10), 9,
     "Max payload storage size limit", ["storage_sizes"]),
])
def test_size_limits_order(method: str, kw: dict[str, Any], sizes: tuple[int, int], points: int,
                           first: str, asked: list[str]) -> None:
    view = FakeView(points=points, sizes=sizes)
    with pytest.raises(BadRequest) as caught:
        run(Enforcer(), SIZED, method, kw, view)
    assert first in caught.value.message
    assert view.asked == asked


def test_sizes_are_not_asked_without_a_size_limit() -> None:
    view = FakeView(points=1)
    run(Enforcer(), STRICT, "upsert", {"points": [P(id=1, vector=[1.0])]}, view)
    run(Enforcer(), STRICT, "set_payload", {"payload": {"a": 1}, "points": [1]}, view)
    assert view.asked == ["points_count"]


def test_nothing_is_asked_when_strict_mode_is_off() -> None:
    view = FakeView(points=99)
    off = STRICT.model_copy(update={"enabled": False})
    run(Enforcer(), off, "query_points", {"limit": 99, "query_filter": CITY}, view, timeout=99)
    run(Enforcer(), None, "upsert", {"points": [P(id=1, vector=[1.0])] * 9}, view)
    assert view.asked == []


class FakeClock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limits_charge_writes_by_filter_their_estimate_and_refill_on_config_change() -> None:
    clock = FakeClock()
    enforcer = Enforcer(clock)
    cfg = models.StrictModeConfig(enabled=True, write_rate_limit=10, read_rate_limit=1)
    view = FakeView(estimate=6)
    delete = {"points_selector": models.FilterSelector(filter=CITY)}
    run(enforcer, cfg, "delete", delete, view)                      # 6 of 10
    assert view.asked == ["estimate"]
    with pytest.raises(RateLimitExceeded) as caught:
        run(enforcer, cfg, "delete", delete, view)                  # 6 more: 4 left
    assert "Write rate limit exceeded: Operation requires 6 tokens but only 4.0 were" \
        in caught.value.message
    assert caught.value.retry_after == 12                           # 2 tokens at 1/6 a second
    clock.now += 12
    run(enforcer, cfg, "delete", delete, view)                      # refilled enough
    run(enforcer, cfg, "scroll", {}, view)                          # reads: their own bucket
    with pytest.raises(RateLimitExceeded):
        run(enforcer, cfg, "scroll", {}, view)
    updated = cfg.model_copy()
    run(enforcer, updated, "scroll", {}, view)                      # a new config: full again
    with pytest.raises(RateLimitExceeded):
        run(enforcer, updated, "scroll", {}, view)
    enforcer.forget("c")
    run(enforcer, updated, "scroll", {}, view)                      # a new collection: full
