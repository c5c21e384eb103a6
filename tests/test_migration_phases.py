"""The migration state machine, guards, routing, heartbeat states and plan validation as tables."""

from __future__ import annotations

import dataclasses

import pytest
from qdrant_client import models

from switchyard.proxy.migration import phases
from switchyard.proxy.migration.heartbeats import Heartbeat, ack_states, laggards
from switchyard.proxy.migration.planner import PlanFacts, PlanRequest, SourceFacts, estimate, validate
from switchyard.proxy.migration.record import PHASES, Migration, Verification
from switchyard.proxy.migration.routing import route, route_for
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding

NOW = 10_000.0
CLEAN = Verification(at=NOW - 10, clean=True, counts={"missing": 0})


def mig(phase: str = "planned", **kw: object) -> Migration:
    base = dict(id="m1", logical="docs", source="docs_a", target="docs_b", model_a="a",
                model_b="b", phase=phase, rev=7, route_rev=7, backfill="done", verification=CLEAN)
    base.update(kw)
    return Migration(**base)  # type: ignore[arg-type]


ALLOWED = {
    ("planned", "start"): "dual_write",
    ("planned", "cancel"): "cancelled",
    ("dual_write", "verify"): "verified",
    ("dual_write", "cancel"): "cancelled",
    ("verified", "switch_reads"): "reads_switched",
    ("verified", "cancel"): "cancelled",
    ("reads_switched", "switch_reads_back"): "verified",
    ("reads_switched", "switch_writes"): "writes_switched",
    ("writes_switched", "switch_writes_back"): "reads_switched",
    ("writes_switched", "complete"): "complete",
}
PAIRS = [(p, t) for p in PHASES for t in phases.TRANSITIONS]


@pytest.mark.parametrize(("phase", "name"), PAIRS)
def test_every_phase_transition_pair(phase: str, name: str) -> None:
    m = mig(phase)
    why = phases.refusal(m, name, phases.Facts(now=NOW))
    if (phase, name) in ALLOWED:
        assert why is None
        moved = phases.apply(m, name, NOW)
        assert moved.phase == ALLOWED[(phase, name)]
        needs_ack = phases.TRANSITIONS[name].needs_ack
        assert moved.route_rev == (m.rev + 1 if needs_ack else m.route_rev)
        assert moved.history[-1].action == name and moved.history[-1].from_phase == phase
    else:
        assert why is not None and f"from phase {phase}" in why


def test_table_covers_every_phase_and_cancel_only_before_reads_switched() -> None:
    assert len(PAIRS) == 7 * 8
    assert phases.TRANSITIONS["cancel"].sources == {"planned", "dual_write", "verified"}
    assert phases.transition_named("switch-reads-back") is phases.TRANSITIONS["switch_reads_back"]
    assert "unknown transition" in (phases.refusal(mig(), "explode", phases.Facts(now=NOW)) or "")


GUARDS = [
    # (transition, phase, record changes, facts changes, expected reason fragment or None)
    ("verify", "dual_write", {"verification": None}, {}, "no verification"),
    ("verify", "dual_write", {"verification": Verification(NOW, False, {"missing": 3})}, {},
     "found differences"),
    ("verify", "dual_write", {"verification": Verification(NOW - 7200, True)}, {}, "older than its TTL"),
    ("verify", "dual_write", {"backfill": "running", "counters": {"backfill_done": 5, "backfill_total": 9}},
     {}, "backfill is running (5/9"),
    ("verify", "dual_write", {}, {"repair_pending": 4}, "repair log holds 4"),
    ("verify", "dual_write", {}, {"laggards": ("p2",)}, None),
    ("switch_reads", "verified", {"verification": Verification(NOW - 7200, True)}, {}, "older than its TTL"),
    ("switch_reads", "verified", {"verification": Verification(NOW - 7200, True)},
     {"verification_ttl": 8000.0}, None),
    ("switch_reads", "verified", {}, {"laggards": ("p2", "p3")}, "proxies p2, p3 have not acknowledged revision 7"),
    ("switch_reads", "verified", {}, {"repair_pending": 1}, "repair log"),
    ("start", "planned", {}, {"laggards": ("p9",)}, "p9"),
    ("switch_writes", "reads_switched", {}, {"laggards": ("p1",)}, "p1"),
    ("complete", "writes_switched", {}, {"laggards": ("p1",)}, "p1"),
    ("complete", "writes_switched", {}, {"repair_pending": 2}, "repair log"),
    # inverse steps and cancel are never blocked by lag, stale verification or repairs
    ("switch_reads_back", "reads_switched", {"verification": None}, {"laggards": ("p1",), "repair_pending": 5}, None),
    ("switch_writes_back", "writes_switched", {}, {"laggards": ("p1",)}, None),
    ("cancel", "verified", {"verification": None}, {"laggards": ("p1",)}, None),
]


@pytest.mark.parametrize(("name", "phase", "rec", "facts", "expected"), GUARDS)
def test_guards(name: str, phase: str, rec: dict, facts: dict, expected: str | None) -> None:
    m = mig(phase, **rec)
    why = phases.refusal(m, name, phases.Facts(now=NOW, **facts))
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


@pytest.mark.parametrize(("phase", "mode", "ok"), [
    ("planned", "merged", True), ("dual_write", "shadow", True), ("verified", "source", True),
    ("reads_switched", "merged", False), ("complete", "source", False), ("cancelled", "merged", False),
    ("dual_write", "bogus", False),
])
def test_read_mode_knob(phase: str, mode: str, ok: bool) -> None:
    m = mig(phase)
    why = phases.read_mode_refusal(m, mode)
    assert (why is None) == ok
    if ok:
        assert phases.set_read_mode(m, mode, NOW).read_mode == mode


def test_active_limit_and_refusal_record() -> None:
    assert phases.active_limit(2, 3) is None
    assert "limit is 3" in (phases.active_limit(3, 3) or "")
    r = phases.refused(mig("planned"), "switch_reads", "nope", NOW)
    assert r.last_refusal is not None and r.last_refusal.reason == "nope"


# (phase, read mode, op) -> (primary, secondary, authority, merge, shadow)
ROUTES = [
    ("planned", "source", "read", ("docs_a", None, "docs_a", False, False)),
    ("planned", "merged", "read", ("docs_a", None, "docs_a", False, False)),
    ("planned", "source", "write", ("docs_a", None, "docs_a", False, False)),
    ("dual_write", "source", "read", ("docs_a", None, "docs_a", False, False)),
    ("dual_write", "merged", "read", ("docs_b", "docs_a", "docs_a", True, False)),
    ("dual_write", "shadow", "read", ("docs_a", "docs_b", "docs_a", False, True)),
    ("dual_write", "source", "write", ("docs_a", "docs_b", "docs_a", False, False)),
    ("verified", "merged", "read", ("docs_b", "docs_a", "docs_a", True, False)),
    ("verified", "source", "write", ("docs_a", "docs_b", "docs_a", False, False)),
    ("reads_switched", "source", "read", ("docs_b", None, "docs_b", False, False)),
    ("reads_switched", "source", "write", ("docs_a", "docs_b", "docs_a", False, False)),
    ("writes_switched", "source", "read", ("docs_b", None, "docs_b", False, False)),
    ("writes_switched", "source", "write", ("docs_b", "docs_a", "docs_b", False, False)),
    ("complete", "source", "read", ("docs_b", None, "docs_b", False, False)),
    ("complete", "source", "write", ("docs_b", None, "docs_b", False, False)),
    ("cancelled", "merged", "read", ("docs_a", None, "docs_a", False, False)),
    ("cancelled", "source", "write", ("docs_a", None, "docs_a", False, False)),
]


@pytest.mark.parametrize(("phase", "mode", "op", "expected"), ROUTES)
def test_routing_table(phase: str, mode: str, op: str, expected: tuple) -> None:
    r = route_for(mig(phase, read_mode=mode), op)
    assert (r.primary, r.secondary, r.authority, r.merge, r.shadow) == expected
    assert phase in r.reason


def test_route_picks_newest_non_cancelled_migration() -> None:
    old = mig("complete", id="m0", created_at=1.0, source="docs_0", target="docs_a")
    new = mig("dual_write", id="m1", created_at=2.0)
    gone = mig("cancelled", id="m2", created_at=3.0, target="docs_c")
    ms = {m.id: m for m in (old, new, gone)}
    r = route(ms, "docs", "write")
    assert r is not None and (r.migration_id, r.secondary) == ("m1", "docs_b")
    assert route(ms, "other", "read") is None
    assert route({"m2": gone}, "docs", "read") is None


def test_heartbeat_states_table() -> None:
    beats = [Heartbeat("p1", {"m1": 8}, NOW - 1), Heartbeat("p2", {"m1": 7}, NOW - 2),
             Heartbeat("p3", {"m1": 5}, NOW - 60), Heartbeat("p4", {}, NOW)]
    acks = ack_states(beats, "m1", 8, NOW, ttl=10)
    assert [(a.instance_id, a.acted_rev, a.state) for a in acks] == [
        ("p1", 8, "acked"), ("p2", 7, "lagging"), ("p3", 5, "gone"), ("p4", 0, "lagging")]
    assert laggards(acks) == ("p2", "p4")


def test_record_round_trip() -> None:
    m = phases.apply(mig("planned", counters={"backfill_done": 3}), "start", NOW)
    m = phases.refused(m, "switch_reads", "why", NOW)
    again = Migration.from_dict(m.to_dict())
    assert again == m


A = ModelSpec(id="a", provider="hashing", model="h", dimensions=4)
B = ModelSpec(id="b", provider="hashing", model="h2", dimensions=8, price_per_million_tokens=2.0)
B_SAME = ModelSpec(id="b4", provider="hashing", model="h3", dimensions=4)
VEC = models.VectorParams(size=4, distance=models.Distance.COSINE)


def facts(**kw: object) -> PlanFacts:
    req = kw.pop("request", PlanRequest("docs", "b"))
    src = kw.pop("source", SourceFacts("docs", False, True, VEC, points=100, sampled=10,
                                       missing_text=0, text_bytes=400))
    base = dict(request=req, source=src, binding=Binding("docs", "a"), model_a=A, model_b=B,
                target="docs__b", target_exists=False)
    base.update(kw)
    return PlanFacts(**base)  # type: ignore[arg-type]


LACKING = SourceFacts("docs", False, True, VEC, points=100, sampled=10, missing_text=4, text_bytes=240)
PLAN_CASES = [
    ({}, []),
    ({"source": SourceFacts("docs", False, False)}, ["doesn't exist"]),
    ({"binding": None, "model_a": None}, ["not bound"]),
    ({"model_b": None}, ["not registered"]),
    ({"target_exists": True}, ["already exists"]),
    ({"target": "docs"}, ["source itself"]),
    ({"source": dataclasses.replace(LACKING)}, ["4 of 10 sampled points (40%) lack the text field `text`"]),
    ({"source": LACKING, "request": PlanRequest("docs", "b", text_fetcher="http")}, []),
    ({"source": LACKING, "request": PlanRequest("docs", "b4", copy_vectors=True), "model_b": B_SAME}, []),
    ({"source": LACKING, "request": PlanRequest("docs", "b", copy_vectors=True)}, ["--copy-vectors needs"]),
    ({"source": SourceFacts("docs", False, True, {"dense": VEC})}, ["no dense vector (unnamed)"]),
    ({"source": SourceFacts("docs", False, True, models.VectorParams(size=5, distance=models.Distance.COSINE))},
     ["has size 5"]),
    ({"active": [mig("dual_write", logical="docs")]}, ["already active on `docs`"]),
    ({"active": [mig("dual_write", id=f"x{i}", logical=f"c{i}", source=f"s{i}", target=f"t{i}")
                 for i in range(3)]}, ["limit is 3"]),
    ({"active": [mig("complete", logical="docs")] * 5}, []),
]


@pytest.mark.parametrize(("changes", "expected"), PLAN_CASES)
def test_plan_validation(changes: dict, expected: list[str]) -> None:
    reasons = validate(facts(**changes))
    assert len(reasons) == len(expected), reasons
    for reason, fragment in zip(reasons, expected):
        assert fragment in reason


def test_plan_estimate() -> None:
    e = estimate(facts(request=PlanRequest("docs", "b", throttle=50.0), throughput=20.0, source=LACKING))
    # 6 of 10 sampled have text, 40 bytes each: 100 points * 0.6 * 40 = 2400 bytes = 600 tokens
    assert (e.text_bytes, e.tokens, e.rate, e.eta_seconds) == (2400, 600, 20.0, 5.0)
    assert e.cost == pytest.approx(600 / 1e6 * 2.0) and e.missing_share == pytest.approx(0.4)
    assert estimate(facts()).eta_seconds is None  # no throttle, no probe: unknown
    empty = SourceFacts("docs", False, True, VEC)
    assert estimate(facts(source=empty)).eta_seconds == 0.0
