"""Adapter records (fit, summary, on/off) and the query planner's mapped slots (pure), and
``switchyard migrate adapter`` against the session's upstream (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from switchyard.backfill import samples
from switchyard.proxy.dataplane import adapter_store
from switchyard.proxy.dataplane.query_vectors import SlotInfo, plan_sides
from switchyard.proxy.migration.record import DUAL_WRITE
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.store import StateStore


def _rotated(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return a, (a @ q).astype(np.float32)


def test_fit_record_and_summary() -> None:
    a, b = _rotated(200, 16)
    rec = adapter_store.fit_record(a, b)
    loaded = adapter_store.load_record(rec)
    assert loaded is not None and loaded.to_target is not None and loaded.to_source is not None
    assert loaded.to_target.fit.mean_cosine > 0.99 and loaded.usable_adapter("target") is not None
    assert np.allclose(loaded.to_target.apply(a[:3]), b[:3] / np.linalg.norm(b[:3], axis=1, keepdims=True), atol=1e-3)
    s = adapter_store.summary(rec)
    assert s["to_target"]["used"] and "matrix" not in json.dumps(s)
    assert s["calibration"] is not None and s["calibration"]["used"]
    off = adapter_store.load_record({**rec, "enabled": False})
    assert off is not None and off.usable_adapter("target") is None and off.usable_calibration() is None


def test_too_few_pairs_gives_a_reason() -> None:
    a, b = _rotated(10, 4)
    rec = adapter_store.fit_record(a, b)
    assert rec["to_target"] is None and "needs 32" in rec["reason"]
    assert adapter_store.vectors_of([{"a": None, "b": [1.0]}])[0].shape[0] == 0


A = ModelSpec(id="a", provider="hashing", model="hash-a", dimensions=4)
B = ModelSpec(id="b", provider="hashing", model="hash-b", dimensions=4)


@pytest.mark.parametrize(("adaptable", "target_mapped", "target_skip", "source_mapped"), [
    ((False, False), (), True, ()),
    ((True, False), (0,), False, ()),
    ((True, True), (0,), False, ()),  # the source owns an A vector: nothing to map there
])
def test_raw_vector_slots_are_mapped_when_an_adapter_is_usable(
        adaptable: tuple[bool, bool], target_mapped: tuple[int, ...], target_skip: bool,
        source_mapped: tuple[int, ...]) -> None:
    slots = [SlotInfo(dims=4, vector=[0.1, 0.2, 0.3, 0.4])]
    target, source = plan_sides(slots, A, B, DUAL_WRITE, {"a": A, "b": B}, adaptable)
    assert target.mapped == target_mapped and (target.skip is not None) == target_skip
    assert source.mapped == source_mapped and source.skip is None


def test_slot_without_components_is_never_mapped() -> None:
    target, _ = plan_sides([SlotInfo(dims=4)], A, B, DUAL_WRITE, {"a": A, "b": B}, (True, True))
    assert target.skip is not None and target.mapped == ()


def _cli(url: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "switchyard.proxy", "migrate", "adapter", *args, "--url", url,
                          "--json"], capture_output=True, text=True, timeout=300, check=True)
    return dict(json.loads(out.stdout))


async def test_migrate_adapter_fits_shows_and_turns_off(upstream: Any, prefix: str) -> None:
    store = StateStore.connect(upstream.rest_url)
    mid = f"{prefix}adapter-m"
    try:
        a, b = _rotated(120, 8, seed=3)
        r = samples.Reservoir(capacity=200)
        for i in range(len(a)):
            r.offer(samples.pair(i, f"t{i}", a[i], b[i]))
        await samples.save(store, mid, "daemon-1", r)
        shown = _cli(upstream.rest_url, mid)
        assert shown["to_target"] is None and "not fitted" in shown["reason"]
        fitted = _cli(upstream.rest_url, mid, "--fit")
        assert fitted["pairs"] == 120 and fitted["to_target"]["fit"]["mean_cosine"] > 0.99
        assert fitted["enabled"] is True
        off = _cli(upstream.rest_url, mid, "--off")
        assert off["enabled"] is False and off["to_target"]["kind"] == fitted["to_target"]["kind"]
        env = await store.get(adapter_store.KIND, mid)
        assert env is not None
        loaded = adapter_store.load_record(env.data)
        assert loaded is not None and loaded.usable_adapter("target") is None
    finally:
        await store.close()


@pytest.mark.parametrize(("record", "pairs", "seen", "refit"), [
    (None, 31, 31, None),                                   # too few pairs for any adapter
    (None, 32, 32, "first fit"),
    ({"to_target": None, "pairs": 10}, 40, 40, "first fit"),  # an earlier record said too few
    ({"to_target": {"kind": "procrustes"}, "seen": 100}, 256, 199, None),
    ({"to_target": {"kind": "procrustes"}, "seen": 100}, 256, 200, "spread over 200 texts"),
    ({"to_target": {"kind": "procrustes"}}, 256, 2, "spread over 2 texts"),  # fitted by hand
    ({"to_target": {"kind": "procrustes"}, "seen": 100}, 20, 5000, None),  # copy kind: no pairs
])
def test_refit_reason(record: dict[str, Any] | None, pairs: int, seen: int, refit: str | None) -> None:
    got = adapter_store.refit_reason(record, pairs, seen)
    assert (got is None) == (refit is None) and (refit is None or refit in str(got))


async def test_backfill_refits_as_its_sample_spreads_and_keeps_an_operators_off(upstream: Any, prefix: str) -> None:
    store = StateStore.connect(upstream.rest_url)
    mid = f"{prefix}adapter-auto"
    try:
        a, b = _rotated(400, 8, seed=5)
        r = samples.Reservoir(capacity=64)
        for i in range(20):
            r.offer(samples.pair(i, f"t{i}", a[i], b[i]))
        assert await samples.save_and_refit(store, mid, "daemon-1", r) is None  # 20 pairs: too few
        assert await store.get(adapter_store.KIND, mid) is None
        for i in range(20, 40):
            r.offer(samples.pair(i, f"t{i}", a[i], b[i]))
        assert "first fit" in str(await samples.save_and_refit(store, mid, "daemon-1", r))
        env = await store.get(adapter_store.KIND, mid)
        assert env is not None and env.data["seen"] == 40 and env.data["pairs"] == 40
        for i in range(40, 79):
            r.offer(samples.pair(i, f"t{i}", a[i], b[i]))
        assert await samples.save_and_refit(store, mid, "daemon-1", r) is None  # 79 < 2 x 40
        await adapter_store.set_enabled(store, mid, False)
        r.offer(samples.pair(79, "t79", a[79], b[79]))
        assert "spread over 80" in str(await samples.save_and_refit(store, mid, "daemon-1", r))
        env = await store.get(adapter_store.KIND, mid)
        assert env is not None and env.data["seen"] == 80 and env.data["enabled"] is False
        assert env.data["pairs"] == 64  # the reservoir's capacity
    finally:
        await store.close()
