"""Strict mode's rate limits (``switchyard.proxy.embedded.rate_limits``) as tables on a fake
clock: Qdrant's token bucket, what each call costs, and the refusal in Qdrant's words."""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client.http import models

from switchyard.proxy.embedded import rate_limits
from switchyard.proxy.embedded.rate_limits import Denied, Limiters, TokenBucket
from switchyard.proxy.errors import RateLimitExceeded


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# (seconds since the previous step, cost, expected outcome: None passes, else Denied)
STEPS_60_PER_MINUTE: list[tuple[float, float, Denied | None]] = [
    (0, 30, None),                     # starts full: 60
    (0, 30, None),                     # 0 left
    (0, 1, Denied(1, 0.0, 1.0)),       # empty: one token a second
    (0.5, 1, Denied(1, 0.5, 0.5)),     # refilled half a token
    (0.5, 1, None),                    # a whole one now
    (120, 60, None),                   # refill stops at the capacity
    (0, 61, Denied(61, 0.0, None)),    # more than the bucket holds: never passes
    (10, 11, Denied(11, 10.0, 1.0)),   # a refusal takes nothing...
    (1, 11, None),                     # ...so the tokens are still there
]


def test_token_bucket_on_a_fake_clock() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock)
    for step, (elapsed, cost, expected) in enumerate(STEPS_60_PER_MINUTE):
        clock.now += elapsed
        got = bucket.try_consume(cost)
        if expected is None:
            assert got is None, step
        else:
            assert got is not None, step
            assert (got.cost, got.retry_after) == (expected.cost, expected.retry_after), step
            assert got.tokens_available == pytest.approx(expected.tokens_available), step


@pytest.mark.parametrize(("denied", "write", "message", "retry"), [
    (Denied(3, 1.0, 29.2), False,
     "Rate limiting exceeded: Read rate limit exceeded: Operation requires 3 tokens but only "
     "1.0 were available. Retry after 30s", 30),
    (Denied(5, 0.04, 2.0), True,
     "Rate limiting exceeded: Write rate limit exceeded: Operation requires 5 tokens but only "
     "0.0 were available. Retry after 2s", 2),
    (Denied(11, 10.0, None), True,
     "Rate limiting exceeded: Write rate limit exceeded, request larger than than rate limiter "
     "capacity, please try to split your request", None),
])
def test_refusal_in_qdrants_words(denied: Denied, write: bool, message: str,
                                  retry: int | None) -> None:
    err = rate_limits.refusal(denied, write)
    assert isinstance(err, RateLimitExceeded)
    assert (err.http_status, err.grpc_code) == (429, "RESOURCE_EXHAUSTED")
    assert err.message == message
    assert err.retry_after == retry


FC = models.FieldCondition(key="n", range=models.Range(gte=1))
TWO = models.Filter(must=[FC, FC])
P = models.PointStruct


@pytest.mark.parametrize(("method", "kw", "cost"), [
    ("scroll", {}, 1),
    ("scroll", {"scroll_filter": TWO}, 3),
    ("count", {"count_filter": models.Filter(must=[FC])}, 2),
    ("facet", {"facet_filter": TWO}, 3),
    ("retrieve", {"ids": [1, 2, 3, 4]}, 4),
    ("query_points", {"query": [1.0]}, 1),
    ("query_points", {"query_filter": TWO}, 3),
    # two searches planned, each applies the root's filter too
    ("query_points", {"query_filter": TWO, "prefetch": [
        models.Prefetch(query=[1.0]), models.Prefetch(query=[1.0], filter=models.Filter(must=FC))]},
     3 + 4),
    ("query_points", {"prefetch": models.Prefetch(prefetch=[models.Prefetch(), models.Prefetch()])},
     2),
    ("query_batch", {"batch": [{"query_filter": TWO}, {}]}, 4),
    # a search costs Qdrant's search_cost: per dense vector, per 64 sparse indices, per vector
    # of a multivector, summed over a query's examples; an order-by query is a scroll
    ("query_points", {"query": models.SparseVector(indices=list(range(130)),
                                                   values=[1.0] * 130)}, 3),
    ("query_points", {"query": [[1.0], [2.0], [3.0]]}, 3),
    ("query_points", {"query": models.NearestQuery(nearest=[1.0]), "query_filter": TWO}, 3),
    ("query_points", {"query": models.RecommendQuery(recommend=models.RecommendInput(
        positive=[1, 2], negative=[[1.0]]))}, 3),
    ("query_points", {"query": models.DiscoverQuery(discover=models.DiscoverInput(
        target=1, context=[models.ContextPair(positive=2, negative=3)]))}, 3),
    ("query_points", {"query": models.ContextQuery(context=[
        models.ContextPair(positive=2, negative=3)] * 2)}, 4),
    ("query_points", {"query": models.OrderByQuery(order_by="n")}, 1),
    ("query_points", {"query": models.FusionQuery(fusion=models.Fusion.RRF), "prefetch": [
        models.Prefetch(query=[[1.0], [2.0]]), models.Prefetch(query=[1.0])]}, 3),
    ("upsert", {"points": [P(id=i, vector=[1.0]) for i in range(5)]}, 5),
    ("upsert", {"points": models.Batch(ids=[1, 2], vectors=[[1.0], [2.0]])}, 2),
    ("update_vectors", {"points": [models.PointVectors(id=1, vector=[1.0])]}, 1),
    ("delete", {"points_selector": models.PointIdsList(points=[1, 2, 3])}, 3),
    ("delete", {"points_selector": models.FilterSelector(filter=TWO)}, 1),  # no estimate here
    ("set_payload", {"points": [1, 2]}, 2),
    ("set_payload", {"points": TWO}, 1),
    ("batch_update_points", {"update_operations": [
        models.UpsertOperation(upsert=models.PointsList(points=[P(id=1, vector=[1.0])] * 3)),
        models.DeleteOperation(delete=models.PointIdsList(points=[1, 2])),
        models.SetPayloadOperation(set_payload=models.SetPayload(payload={}, filter=TWO))]}, 6),
    ("create_payload_index", {"field_name": "a"}, 1),
])
def test_costs(method: str, kw: dict[str, Any], cost: int) -> None:
    assert rate_limits.cost(method, kw) == cost


ESTIMATE = {id(TWO): 7}


@pytest.mark.parametrize(("method", "kw", "cost"), [
    ("delete", {"points_selector": models.FilterSelector(filter=TWO)}, 7),
    ("set_payload", {"points": TWO}, 7),
    ("set_payload", {"points": [1]}, 1),                      # ids: no estimate needed
    ("delete_vectors", {"points": TWO}, 7),
    ("batch_update_points", {"update_operations": [
        models.DeleteOperation(delete=models.FilterSelector(filter=TWO)),
        models.OverwritePayloadOperation(overwrite_payload=models.SetPayload(
            payload={}, filter=TWO)),
        models.DeletePayloadOperation(delete_payload=models.DeletePayload(keys=["a"], points=[1]))]},
     15),
])
def test_writes_by_filter_cost_the_estimate(method: str, kw: dict[str, Any], cost: int) -> None:
    assert rate_limits.cost(method, kw, lambda f: ESTIMATE[id(f)]) == cost


def test_an_estimate_of_none_still_costs_one() -> None:
    kw = {"points_selector": models.FilterSelector(filter=TWO)}
    assert rate_limits.cost("delete", kw, lambda f: 0) == 1


def test_limiters_charge_the_right_bucket_and_refill_on_a_config_change() -> None:
    clock = FakeClock()
    limiters = Limiters(clock)
    cfg = models.StrictModeConfig(enabled=True, read_rate_limit=2, write_rate_limit=3)
    limiters.check(cfg, "scroll", {})
    limiters.check(cfg, "upsert", {"points": [P(id=1, vector=[1.0])] * 3})  # writes: own bucket
    limiters.check(cfg, "get_collection", {})                             # metadata: free
    limiters.check(cfg, "scroll", {})
    with pytest.raises(RateLimitExceeded) as caught:
        limiters.check(cfg, "scroll", {})
    assert "Read rate limit exceeded" in caught.value.message
    with pytest.raises(RateLimitExceeded) as caught:
        limiters.check(cfg, "delete", {"points_selector": models.PointIdsList(points=[1])})
    assert "Write rate limit exceeded" in caught.value.message
    # an updated config (a new object, as the catalog stores it) starts with full buckets
    updated = cfg.model_copy()
    limiters.check(updated, "scroll", {})
    # strict mode off: no limits at all, whatever the config holds
    off = cfg.model_copy(update={"enabled": False})
    for _ in range(5):
        limiters.check(off, "scroll", {})
    limiters.check(None, "scroll", {})
