"""The executor's decision, as a table: which path serves a point call, on which collection."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from switchyard.proxy.intercept.dispatch import CallPlan, Serve, dispatch
from switchyard.proxy.migration.record import (
    COMPLETE,
    DUAL_WRITE,
    PLANNED,
    READS_SWITCHED,
    VERIFIED,
    WRITES_SWITCHED,
    Event,
    Migration,
)
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.snapshot import StateSnapshot

A = ModelSpec(id="ma", provider="hashing", model="a", dimensions=4)
B = ModelSpec(id="mb", provider="hashing", model="b", dimensions=6)
REEMBED = Migration(id="m1", logical="docs", source="docs_v1", target="docs_v2", model_a="ma", model_b="mb",
                    logical_is_alias=True)
IN_PLACE = Migration(id="m2", logical="notes", source="notes", target="notes", model_a="ma", model_b="mb",
                     vector="a", kind="named-vector", options={"vector": "b", "old_vector": "a"})


def snap(*migrations: Migration, bound: tuple[str, ...] = ()) -> StateSnapshot:
    return StateSnapshot(
        models=MappingProxyType({"ma": A, "mb": B}),
        bindings=MappingProxyType({name: Binding(name, "ma") for name in bound}),
        aliases=MappingProxyType({"docs": "docs_v1"}),
        migrations=MappingProxyType({m.id: m for m in migrations}),
    )


def at(m: Migration, phase: str, read_mode: str = "source") -> Migration:
    return replace(m, phase=phase, read_mode=read_mode)


# (snapshot, collection, kind, similarity, reader) -> serve, physical, checked, mirrored to
CASES = [
    # no migration, no binding: forwarded as is, the upstream judges the caller
    (snap(), "plain", "read", True, True, Serve.FORWARD, "plain", False, None),
    (snap(), "plain", "write", False, True, Serve.WRITE, "plain", False, None),
    # a binding: inference objects of similarity reads are served; other reads are forwarded
    (snap(bound=("kb",)), "kb", "read", True, True, Serve.INFERENCE, "kb", True, None),
    (snap(bound=("kb",)), "kb", "read", False, True, Serve.FORWARD, "kb", True, None),
    (snap(bound=("kb",)), "kb", "read", True, False, Serve.FORWARD, "kb", True, None),  # no reader
    (snap(bound=("kb",)), "kb", "write", False, True, Serve.WRITE, "kb", True, None),
    # a planned migration routes to the source and mirrors nothing
    (snap(at(REEMBED, PLANNED)), "docs", "write", False, True, Serve.WRITE, "docs_v1", True, None),
    (snap(at(REEMBED, PLANNED)), "docs", "read", True, True, Serve.FORWARD, "docs_v1", True, None),
    # dual write: writes to the source mirrored to the target; read modes decide similarity reads
    (snap(at(REEMBED, DUAL_WRITE)), "docs", "write", False, True, Serve.WRITE, "docs_v1", True, "docs_v2"),
    (snap(at(REEMBED, DUAL_WRITE, "merged")), "docs", "read", True, True, Serve.MERGED, "docs_v1", True, None),
    (snap(at(REEMBED, VERIFIED, "shadow")), "docs", "read", True, True, Serve.MERGED, "docs_v1", True, None),
    (snap(at(REEMBED, DUAL_WRITE, "source")), "docs", "read", True, True, Serve.MERGED, "docs_v1", True, None),
    (snap(at(REEMBED, DUAL_WRITE, "merged")), "docs", "read", False, True, Serve.FORWARD, "docs_v1", True, None),
    (snap(at(REEMBED, DUAL_WRITE, "merged")), "docs", "read", True, False, Serve.FORWARD, "docs_v1", True, None),
    # switched: reads from the target; writes to the target mirrored back to the source
    (snap(at(REEMBED, READS_SWITCHED)), "docs", "read", True, True, Serve.FORWARD, "docs_v2", True, None),
    (snap(at(REEMBED, WRITES_SWITCHED)), "docs", "write", False, True, Serve.WRITE, "docs_v2", True, "docs_v1"),
    (snap(at(REEMBED, COMPLETE)), "docs", "write", False, True, Serve.WRITE, "docs_v2", True, None),
    # in place (a named vector): similarity reads ranked by one vector, never mirrored
    (snap(at(IN_PLACE, DUAL_WRITE)), "notes", "read", True, True, Serve.IN_PLACE_READ, "notes", True, None),
    (snap(at(IN_PLACE, DUAL_WRITE, "merged")), "notes", "read", True, True, Serve.MERGED, "notes", True, None),
    (snap(at(IN_PLACE, DUAL_WRITE)), "notes", "write", False, True, Serve.WRITE, "notes", True, None),
]


@pytest.mark.parametrize("state, name, kind, similarity, reader, serve, physical, checked, mirrored", CASES)
def test_dispatch(state: StateSnapshot, name: str, kind: str, similarity: bool, reader: bool, serve: Serve,
                  physical: str, checked: bool, mirrored: str | None) -> None:
    cp = dispatch(state, name, kind, similarity, reader)
    assert (cp.serve, cp.physical, cp.checked) == (serve, physical, checked)
    assert (cp.mirror.secondary if cp.mirror is not None else None) == mirrored
    assert (cp.why is None) == (not state.migrations)  # every migration-governed call says why
    assert cp.closed is None
    assert (cp.merging is not None, cp.in_place is not None) == (serve is Serve.MERGED, serve is Serve.IN_PLACE_READ)


def test_in_place_writes_get_the_new_vector_and_mirrored_writes_their_model() -> None:
    cp = dispatch(snap(at(IN_PLACE, DUAL_WRITE)), "notes", "write", False, True)
    assert cp.in_place_write is not None and cp.in_place_write[0].id == "m2"
    mirrored = dispatch(snap(at(REEMBED, DUAL_WRITE)), "docs", "write", False, True)
    assert mirrored.mirror is not None and mirrored.mirror.spec == B and mirrored.mirror.to_target
    back = dispatch(snap(at(REEMBED, WRITES_SWITCHED)), "docs", "write", False, True)
    assert back.mirror is not None and back.mirror.spec == A and not back.mirror.to_target


def test_a_cleaned_up_split_closes_writes_and_sends_reads_to_its_targets() -> None:
    split = Migration(id="m3", logical="big", source="big", target="big", model_a="ma", model_b="ma",
                      kind="split", options={"derived": {"layout": {"fields": ["tenant"],
                                                                   "targets": {"a": "big_a", "b": "big_b"}}}},
                      phase=COMPLETE, history=(Event(at=1.0, action="cleanup", from_phase=COMPLETE,
                                                     to_phase=COMPLETE, rev=1),))
    state = snap(split)
    write: CallPlan = dispatch(state, "big", "write", False, True)
    assert write.serve is Serve.WRITE and write.closed is not None and "big_a" in write.closed
    read = dispatch(state, "big", "read", True, True)
    assert read.serve is Serve.SPLIT_READ and read.split is split
    assert dispatch(state, "big", "read", True, False).serve is Serve.FORWARD  # no reader: routed only
