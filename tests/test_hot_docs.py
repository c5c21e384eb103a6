"""Heavy-hitters counts and the backfill's visiting order (pure, tables)."""

from __future__ import annotations

import random

import pytest

from switchyard.proxy.dataplane.hot_docs import HeavyHitters, backfill_order


def test_space_saving_keeps_every_key_above_its_guarantee() -> None:
    rng = random.Random(3)
    stream = [f"hot{i}" for i in range(5) for _ in range(200 - 30 * i)]
    stream += [f"cold{rng.randrange(5000)}" for _ in range(3000)]
    rng.shuffle(stream)
    sketch = HeavyHitters(capacity=50)
    sketch.offer(stream)
    assert len(sketch.counts) == 50
    assert sketch.total == len(stream)
    top = [k for k, _ in sketch.top(5)]
    assert top == [f"hot{i}" for i in range(5)]
    for i in range(5):  # over-estimates by at most its error bound, never under
        true = 200 - 30 * i
        assert true <= sketch.counts[f"hot{i}"] <= true + sketch.errors[f"hot{i}"]


def test_sketches_merge_and_round_trip() -> None:
    a, b = HeavyHitters(capacity=3), HeavyHitters(capacity=3)
    a.offer(["x", "x", "y"])
    b.offer(["x", "z", "z", "z", "w"])
    m = a.merged(b)
    assert m.top(3) == [("x", 3), ("z", 3), ("w", 1)]  # ties by key
    assert m.total == 8
    again = HeavyHitters.from_dict(m.to_dict())
    assert again.counts == m.counts and again.total == 8


@pytest.mark.parametrize(("requested", "counts", "limit", "order", "hot", "reason"), [
    (None, {}, 10, "id", (), "no read counts yet"),
    ("hot", {}, 10, "id", (), "--order hot asked"),
    ("hot", {"3": 0}, 10, "id", (), "no read counts"),
    ("id", {"3": 5}, 10, "id", (), "requested"),
    (None, {"3": 5, "1": 9, "2": 5}, 10, "hot", ("1", "2", "3"), "3 ids holding 100%"),
    ("hot", {"3": 5, "1": 9, "2": 5}, 2, "hot", ("1", "2"), "2 ids holding 74%"),
])
def test_backfill_order_table(requested: str | None, counts: dict[str, int], limit: int, order: str,
                              hot: tuple[str, ...], reason: str) -> None:
    got = backfill_order(requested, counts, limit)
    assert (got.order, got.hot) == (order, hot)
    assert reason in got.reason


def test_backfill_order_refuses_unknown() -> None:
    with pytest.raises(ValueError, match="order must be one of"):
        backfill_order("random", {})
