"""Fail closed on state (issue 11 item 4): the staleness decision as a table, the guard, the
heartbeat that is withheld while stale, and the ack states such a proxy gets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from switchyard.proxy.config import load_config
from switchyard.proxy.errors import ConfigError, StateUnavailable
from switchyard.proxy.migration import heartbeats
from switchyard.proxy.migration.heartbeats import Heartbeat, ack_states
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.state.freshness import StateGuard, governed_by, stale_reason, write_refusal


def mig(phase: str, logical: str = "docs", mid: str = "m1") -> Migration:
    return Migration(id=mid, logical=logical, source=f"{logical}_a", target=f"{logical}_b",
                     model_a="a", model_b="b", phase=phase)


# (age, bound, collection governed by, kind) -> refused?
TABLE = [
    (0.5, 5.0, "m1", "write", False),    # fresh: everything goes
    (5.0, 5.0, "m1", "write", False),    # at the bound: still trusted
    (5.1, 5.0, "m1", "write", True),     # past the bound: governed writes refused
    (60.0, 5.0, "m1", "read", False),    # reads keep their last routing
    (60.0, 5.0, None, "write", False),   # collections no migration governs are not affected
    (None, 5.0, "m1", "write", True),    # never read: as stale as it gets
    (None, 5.0, "m1", "read", False),
]


@pytest.mark.parametrize(("age", "bound", "mid", "kind", "refused"), TABLE)
def test_write_refusal_table(age: float | None, bound: float, mid: str | None, kind: str,
                             refused: bool) -> None:
    reason = write_refusal(age, bound, "docs", mid, kind, "401 Unauthorized")
    assert (reason is not None) is refused
    if refused:
        assert reason is not None
        assert "cannot read its migration state" in reason and "401 Unauthorized" in reason
        assert "writes to docs (migration m1) are refused" in reason and "unmirrored" in reason


def test_reason_names_age() -> None:
    assert stale_reason(12.34, 5.0, "connection refused") == (
        "Switchyard cannot read its migration state for 12.3 s (connection refused)")
    assert stale_reason(1.0, 5.0, "x") is None


@pytest.mark.parametrize(("phase", "governed"), [
    ("planned", True), ("dual_write", True), ("verified", True), ("reads_switched", True),
    ("writes_switched", True), ("complete", False), ("cancelled", False)])
def test_governed_by_active_phases_only(phase: str, governed: bool) -> None:
    migrations = {"m1": mig(phase)}
    assert (governed_by(migrations, "docs") == "m1") is governed
    assert governed_by(migrations, "other") is None
    assert governed_by({}, "docs") is None


class FakeCache:
    """The guard's seam: an age and the last refresh failure."""

    def __init__(self, age: float | None, exc: BaseException | None = None) -> None:
        self._age, self.last_exception = age, exc

    def age(self) -> float | None:
        return self._age


def test_guard_raises_503_unavailable_for_governed_writes() -> None:
    migrations = {"m1": mig("dual_write")}
    guard = StateGuard(FakeCache(9.0, StateUnavailable("boom")), 5.0)
    with pytest.raises(StateUnavailable) as info:
        guard.check(migrations, "docs", "write")
    assert info.value.http_status == 503 and info.value.grpc_code == "UNAVAILABLE"
    assert "for 9.0 s (boom)" in str(info.value)
    guard.check(migrations, "docs", "read")
    guard.check(migrations, "elsewhere", "write")
    StateGuard(FakeCache(1.0), 5.0).check(migrations, "docs", "write")
    assert guard.stale() is not None and StateGuard(FakeCache(1.0), 5.0).stale() is None


class CountingStore:
    def __init__(self) -> None:
        self.beats = 0

    async def upsert(self, kind: str, key: str, data: dict[str, Any]) -> None:
        self.beats += 1


class Snap:
    snapshot: Any = None


async def test_heartbeat_withheld_while_stale() -> None:
    store = CountingStore()
    stale: list[str | None] = ["Switchyard cannot read its migration state for 9.0 s"]
    task = asyncio.get_running_loop().create_task(heartbeats.run_heartbeats(
        store, "p1", Snap(), 0.01, stale=lambda: stale[0]))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.1)
        assert store.beats == 0
        stale[0] = None
        for _ in range(200):
            if store.beats:
                break
            await asyncio.sleep(0.01)
        assert store.beats > 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_silent_proxy_lags_then_goes() -> None:
    """A proxy that stopped beating is never 'acked' for a newer revision: lagging (transitions
    wait) while its record is younger than the TTL, gone after."""
    beat = Heartbeat("p1", {"m1": 3}, last_seen=100.0)
    assert ack_states([beat], "m1", 4, now=105.0, ttl=10.0)[0].state == "lagging"
    assert ack_states([beat], "m1", 4, now=111.0, ttl=10.0)[0].state == "gone"


def test_config_staleness_default_and_bound() -> None:
    assert load_config({}, {}, None).max_staleness == 5.0
    assert load_config({"state_cache_ttl": "1"}, {}, None).max_staleness == 4.0
    assert load_config({}, {"SWITCHYARD_STATE_MAX_STALENESS": "12"}, None).max_staleness == 12.0
    with pytest.raises(ConfigError, match="state_max_staleness"):
        load_config({"state_max_staleness": "1"}, {}, None)
