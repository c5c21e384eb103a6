"""Pure parts of versioned schemas: chain validation, revision ranges, the planner's exact
calls, the already-applied probes, the config view and drift diff (tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from switchyard.proxy.errors import BadRequest, ConfigError
from switchyard.proxy.schema.config_view import diff, view
from switchyard.proxy.schema.executor import already
from switchyard.proxy.schema.operations import Operations, record
from switchyard.proxy.schema.planner import plan_revision
from switchyard.proxy.schema.revisions import Revision, between, chain, load_folder, new_file
from switchyard.proxy.schema.runner import plan_downgrade, plan_upgrade


def _noop(op: Any) -> None:
    return None


def rev(rid: str, parent: str | None, up: Any = _noop, down: Any = _noop) -> Revision:
    return Revision(rid, parent, f"m{rid}", up, down, f"{rid}.py")


@pytest.mark.parametrize("revs, problem", [
    ([rev("a", None), rev("b", "a"), rev("c", "a")], "branch: revisions b, c all follow parent 'a'"),
    ([rev("a", None), rev("b", None)], "branch: revisions a, b all follow the root"),
    ([rev("a", "b"), rev("b", "a")], "cycle"),
    ([rev("a", None), rev("b", "zz")], "names parent 'zz', which does not exist"),
    ([rev("a", None), rev("a", None)], "defined twice"),
])
def test_chain_refusals(revs: list[Revision], problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        chain(revs)
    assert problem in str(exc.value)


def test_chain_orders_from_root() -> None:
    assert [r.id for r in chain([rev("c", "b"), rev("a", None), rev("b", "a")])] == ["a", "b", "c"]
    assert chain([]) == []


@pytest.mark.parametrize("current, target, want", [
    (None, "head", ["a", "b", "c"]), ("a", "head", ["b", "c"]), ("c", "head", []),
    (None, "b", ["a", "b"]), ("b", "b", []),
])
def test_between(current: str | None, target: str, want: list[str]) -> None:
    ordered = chain([rev("a", None), rev("b", "a"), rev("c", "b")])
    assert [r.id for r in between(ordered, current, target)] == want


def test_between_refuses_unknown_and_backwards() -> None:
    ordered = chain([rev("a", None), rev("b", "a")])
    with pytest.raises(BadRequest, match="unknown revision 'x'"):
        between(ordered, None, "x")
    with pytest.raises(BadRequest, match="use downgrade"):
        between(ordered, "b", "a")


def test_revision_files_written_from_the_template_chain(tmp_path: Path) -> None:
    first = new_file(tmp_path, "create docs")
    second = new_file(tmp_path, "add vector")
    ordered = load_folder(tmp_path)
    assert [r.path for r in ordered] == [str(first), str(second)]
    assert ordered[1].parent == ordered[0].id and ordered[0].parent is None
    assert ordered[1].message == "add vector"
    (tmp_path / "x_branch.py").write_text(
        f"revision = 'x'\nparent = {ordered[0].id!r}\ndef upgrade(op): pass\ndef downgrade(op): pass\n")
    with pytest.raises(ConfigError, match="branch"):
        load_folder(tmp_path)


def test_planner_exact_calls_and_snapshot_before_deleting() -> None:
    def up(op: Operations) -> None:
        op.create_index("docs", "kind", "keyword")
        op.change_hnsw("docs", m=32)
        op.change_quantization("docs", None)
        op.drop_named_vector("docs", "old")
        op.rename_via_alias("live", "docs")
    steps = plan_revision("0004", record(up))
    got = [(s.id, s.mode, [(c.method, c.path, c.body) for c in s.calls]) for s in steps]
    assert got == [
        ("0004:s0:snapshot", "snapshot", [("POST", "/collections/docs/snapshots?wait=true", None)]),
        ("0004:00:create_index", "direct", [("PUT", "/collections/docs/index?wait=true",
                                              {"field_name": "kind", "field_schema": "keyword"})]),
        ("0004:01:change_hnsw", "direct", [("PATCH", "/collections/docs", {"hnsw_config": {"m": 32}})]),
        ("0004:02:change_quantization", "direct",
         [("PATCH", "/collections/docs", {"quantization_config": "Disabled"})]),
        ("0004:03:drop_named_vector", "direct", [("DELETE", "/collections/docs/vectors/old?wait=true", None)]),
        ("0004:04:rename_via_alias", "direct", [("POST", "/collections/aliases", {"actions": [
            {"delete_alias": {"alias_name": "live"}},
            {"create_alias": {"alias_name": "live", "collection_name": "docs"}}]})]),
    ]
    assert [s.deletes_data for s in steps] == [False, False, False, False, True, False]


def test_migration_operations_are_admin_api_plans() -> None:
    def up(op: Operations) -> None:
        op.add_named_vector("docs", "new", size=8, model="m-new", text_field="text")
        op.change_model("docs", "m-b", target="docs_b")
    steps = plan_revision("2", record(up))
    assert [(s.mode, s.calls[0].path, s.calls[0].body) for s in steps] == [
        ("migration", "/switchyard/v1/migrations",
         {"logical": "docs", "kind": "named-vector", "to_model": "m-new", "options": {"vector": "new"},
          "text_field": "text"}),
        ("migration", "/switchyard/v1/migrations", {"logical": "docs", "to_model": "m-b", "target": "docs_b"}),
    ]


@pytest.mark.parametrize("call", [
    lambda op: op.change_vectors("docs", {"v": {"size": 4}}),
    lambda op: op.add_named_vector("docs", "v"),
    lambda op: op.create_index("_switchyard", "f", "keyword"),
    lambda op: op.run_python(42),
])
def test_operations_refused_when_planned(call: Any) -> None:
    with pytest.raises(BadRequest):
        record(call)


LIVE = {"vectors": {"old": {"size": 4, "distance": "Cosine"}}, "sparse_vectors": {},
        "hnsw": {"m": 32, "ef_construct": 100}, "quantization": None,
        "indexes": {"kind": "keyword"}}


@pytest.mark.parametrize("op, args, live, want", [
    ("create_collection", {}, LIVE, True), ("create_collection", {}, None, False),
    ("drop_collection", {}, None, True), ("drop_collection", {}, LIVE, False),
    ("add_named_vector", {"name": "old"}, LIVE, True), ("add_named_vector", {"name": "new"}, LIVE, False),
    ("drop_named_vector", {"name": "new"}, LIVE, True), ("drop_named_vector", {"name": "old"}, LIVE, False),
    ("create_index", {"field_name": "kind"}, LIVE, True), ("create_index", {"field_name": "n"}, LIVE, False),
    ("drop_index", {"field_name": "n"}, LIVE, True), ("drop_index", {"field_name": "kind"}, LIVE, False),
    ("change_hnsw", {"hnsw_config": {"m": 32}}, LIVE, True),
    ("change_hnsw", {"hnsw_config": {"m": 16}}, LIVE, False),
    ("change_quantization", {"quantization_config": "Disabled"}, LIVE, True),
    ("change_quantization", {"quantization_config": {"scalar": {"type": "int8"}}}, LIVE, False),
])
def test_already_applied_probes(op: str, args: dict[str, Any], live: Any, want: bool) -> None:
    from switchyard.proxy.schema.planner import Step
    assert already(Step("s", "r", op, "docs", "direct", (), False, args), live, {}) is want


def test_config_view_and_drift_diff() -> None:
    info = {"config": {"params": {"vectors": {"size": 4, "distance": "Dot"}},
                       "hnsw_config": {"m": 16, "ef_construct": 100, "on_disk": None},
                       "optimizer_config": {"indexing_threshold": 10000, "flush_interval_sec": 5}},
            "payload_schema": {"kind": {"data_type": "keyword", "points": 3}},
            "points_count": 7}
    v = view(info, "m-a")
    assert v == {"vectors": {"": {"distance": "Dot", "size": 4}}, "sparse_vectors": {},
                 "hnsw": {"ef_construct": 100, "m": 16}, "quantization": None,
                 "optimizers": {"indexing_threshold": 10000}, "indexes": {"kind": "keyword"},
                 "model": "m-a"}
    changed = {**v, "hnsw": {"ef_construct": 100, "m": 8}, "indexes": {}}
    assert diff(v, changed) == ["hnsw.m: 16 -> 8", "indexes.kind: 'keyword' -> (absent)"]
    assert diff(v, v) == [] and diff(None, None) == []
    assert diff(v, None) == ["collection: present -> (absent)"]


def test_downgrade_plan_restores_dropped_vectors_from_snapshot() -> None:
    def up(op: Operations) -> None:
        op.drop_named_vector("docs", "old")

    def down(op: Operations) -> None:
        op.add_named_vector("docs", "old", size=4)
    ordered = chain([rev("1", None), rev("2", "1", up, down)])
    (r, steps, _), = plan_downgrade(ordered, "2", "1")
    assert [(s.id, s.mode) for s in steps] == [("down:2:00:add_named_vector", "direct"),
                                               ("down:2:r0:restore", "restore")]
    assert steps[1].args == {"name": "old", "from_revision": "2"}
    assert [r.id for r, _, _ in plan_upgrade(ordered, None, "head")] == ["1", "2"]
