"""The kind abstraction and the ``copy`` kind's pure parts, as tables: option checks, target
settings, the vector map, per-point conversion, layout diffs, old records, CLI options."""

from __future__ import annotations

import argparse

import pytest

from switchyard.proxy.errors import BadRequest
from switchyard.proxy.migration import kinds, layouts
from switchyard.proxy.migration.command import plan_options, register
from switchyard.proxy.migration.kinds.copy import (
    convert, layout_change_reasons, option_reasons, target_settings, vector_map,
)
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.routing import route_for, table_route

UNNAMED = {"vectors": {"size": 4, "distance": "Cosine"}, "hnsw_config": {"m": 16, "ef_construct": 100},
           "payload_indexes": {"tenant": "keyword"}}
NAMED = {"vectors": {"dense": {"size": 4, "distance": "Cosine"}, "title": {"size": 2, "distance": "Dot"}}}


def _m(**kw: object) -> Migration:
    base = dict(id="m1", logical="docs", source="docs_a", target="docs_b", model_a="a", model_b="a")
    return Migration(**{**base, **kw})  # type: ignore[arg-type]


def test_old_records_read_as_reembed_and_unknown_kinds_fail_loudly() -> None:
    stored = _m().stored()
    stored.pop("kind")
    stored.pop("options")
    m = Migration.from_dict(stored)
    assert (m.kind, dict(m.options)) == ("reembed", {})
    assert kinds.of(m).name == "reembed"
    assert Migration.from_dict(_m(kind="copy", options={"set": {"a": 1}}).stored()).options == {"set": {"a": 1}}
    with pytest.raises(BadRequest, match="unknown migration kind 'nope'"):
        kinds.of(_m(kind="nope"))


@pytest.mark.parametrize("phase", ["planned", "dual_write", "verified", "reads_switched",
                                   "writes_switched", "complete"])
def test_reembed_and_copy_route_by_the_shared_table(phase: str) -> None:
    for kind in ("reembed", "copy"):
        m = _m(kind=kind, phase=phase)
        for op in ("read", "write"):
            assert route_for(m, op) == table_route(m, op)


@pytest.mark.parametrize("options,fragment", [
    ({"sett": {}}, "unknown copy option `sett`"),
    ({"set": {"bogus.m": 1}}, "--set `bogus.m`: the first part must be one of"),
    ({"set": [1]}, "`set` must map dotted paths"),
    ({"indexes": {"tenant": "nonsense"}}, "--index `tenant`"),
    ({"drop_indexes": "tenant"}, "`drop_indexes` must be a list"),
    ({"quantization": 3}, "`quantization` must be a JSON object or null"),
    ({"vectors_config": [1]}, "`vectors_config` must be a JSON object"),
    ({"clients_follow_layout": "yes"}, "`clients_follow_layout` must be true or false"),
])
def test_copy_option_refusals(options: dict[str, object], fragment: str) -> None:
    reasons = option_reasons(options)
    assert any(fragment in r for r in reasons), reasons


@pytest.mark.parametrize(("vmap", "fragments"), [
    ({"": ""}, []),
    ({"dense": "dense", "title": "title"}, []),
    ({"": "dense"}, ["(`` -> `dense`;"]),
    ({"dense": "", "title": None}, ["`dense` -> ``", "`title` dropped"]),
])
def test_a_plan_that_renames_vectors_needs_clients_to_follow(vmap: dict[str, str | None],
                                                            fragments: list[str]) -> None:
    reasons = layout_change_reasons(vmap)
    assert len(reasons) == (1 if fragments else 0)
    assert all(f in reasons[0] for f in fragments) and (not reasons or "clients_follow_layout=true" in reasons[0])


def test_copy_options_that_are_fine_have_no_reasons() -> None:
    assert option_reasons({"set": {"hnsw_config.m": 32}, "indexes": {"t": "keyword", "n": {"type": "integer"}},
                           "drop_indexes": ["x"], "quantization": None, "vector_map": {"": "dense"}}) == []
    assert kinds.get("reembed").option_reasons({"x": 1}) == ["kind reembed takes no options (got x)"]


def test_target_settings_apply_set_vectors_quantization_and_indexes() -> None:
    out = target_settings(UNNAMED, {
        "set": {"hnsw_config.m": 32, "optimizers_config.indexing_threshold": 0},
        "vectors_config": {"dense": {"size": 4, "distance": "Cosine", "datatype": "float16"}},
        "quantization": {"scalar": {"type": "int8"}},
        "indexes": {"kind": "integer"}, "drop_indexes": ["tenant"]})
    assert out["hnsw_config"] == {"m": 32, "ef_construct": 100}
    assert out["optimizers_config"] == {"indexing_threshold": 0}
    assert out["vectors"] == {"dense": {"size": 4, "distance": "Cosine", "datatype": "float16"}}
    assert out["payload_indexes"] == {"kind": "integer"}
    assert UNNAMED["hnsw_config"] == {"m": 16, "ef_construct": 100}  # the source is not changed
    assert layouts.settings_reasons(out) == []
    kwargs = layouts.create_kwargs(out)
    assert kwargs["hnsw_config"].m == 32 and kwargs["vectors_config"]["dense"].size == 4
    assert layouts.settings_reasons({**out, "hnsw_config": {"m": "lots"}})[0].startswith(
        "the target settings are not valid Qdrant configuration")


def test_diff_lists_every_changed_leaf() -> None:
    out = target_settings(UNNAMED, {"set": {"hnsw_config.m": 32}, "indexes": {"kind": "integer"}})
    assert layouts.diff(UNNAMED, out) == ("hnsw_config.m: 16 -> 32", "payload_indexes.kind: (none) -> 'integer'")


@pytest.mark.parametrize("source,target,given,expected,fragment", [
    (UNNAMED, UNNAMED, None, {"": ""}, None),
    (UNNAMED, {"vectors": {"dense": {"size": 4, "distance": "Cosine"}}}, None, {"": "dense"}, None),
    (NAMED, {"vectors": {"size": 4, "distance": "Cosine"}}, {"dense": "", "title": None},
     {"dense": "", "title": None}, None),
    (NAMED, {"vectors": {"size": 4, "distance": "Cosine"}}, None, {"dense": None, "title": None},
     "needs exactly one source vector"),
    (UNNAMED, {"vectors": {"size": 8, "distance": "Cosine"}}, None, {"": ""}, "needs --kind reembed"),
    (UNNAMED, UNNAMED, {"x": ""}, {"": "", "x": ""}, "does not have"),
])
def test_vector_map(source: dict[str, object], target: dict[str, object], given: object,
                    expected: dict[str, object], fragment: str | None) -> None:
    vmap, reasons = vector_map(source, target, given)
    assert vmap == expected
    if fragment is None:
        assert reasons == []
    else:
        assert any(fragment in r for r in reasons), reasons


@pytest.mark.parametrize("vector,vmap,uint8,expected", [
    ([0.1, 0.2], {"": ""}, (), [0.1, 0.2]),
    ([0.1, 0.2], {"": "dense"}, (), {"dense": [0.1, 0.2]}),
    ({"dense": [0.1], "sparse": {"indices": [1], "values": [0.5]}}, {"dense": ""}, (),
     {"": [0.1], "sparse": {"indices": [1], "values": [0.5]}}),
    ({"dense": [0.1], "title": [1.0]}, {"dense": "", "title": None}, (), [0.1]),
    ([1.4, -3.0, 300.0, 7.6], {"": "q"}, ("q",), {"q": [1, 0, 255, 8]}),
    (None, {"": ""}, (), None),
])
def test_convert(vector: object, vmap: dict[str, str | None], uint8: tuple[str, ...], expected: object) -> None:
    assert convert(vector, vmap, uint8) == expected


def test_copy_mirror_converts_both_ways() -> None:
    m = _m(kind="copy", copy_vectors=True, options={"derived": {"vector_map": {"": "dense"}, "uint8": []}})
    k = kinds.of(m)
    assert k.mirror_vector(m, [1.0, 2.0], True) == {"dense": [1.0, 2.0]}
    assert k.mirror_vector(m, {"dense": [1.0, 2.0]}, False) == [1.0, 2.0]
    assert k.transform(m, [1.0, 2.0], None) == {"dense": [1.0, 2.0]}
    assert k.target_vector_name(m) == "dense"
    assert kinds.get("reembed").mirror_vector(m, [1.0], True) == [1.0]


def test_cli_plan_options(tmp_path: object) -> None:
    import pathlib

    vc = pathlib.Path(str(tmp_path)) / "vectors.json"
    vc.write_text('{"dense": {"size": 4, "distance": "Cosine"}}')
    q = pathlib.Path(str(tmp_path)) / "q.json"
    q.write_text("null")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["migrate", "plan", "docs", "--kind", "copy", "--set", "hnsw_config.m=32",
                              "--set", "on_disk_payload=true", "--vectors-config", str(vc),
                              "--quantization", str(q), "--index", "tenant:keyword",
                              "--index", 'n:{"type": "integer", "range": true}', "--drop-index", "old",
                              "--vector-map", "=dense", "--option", "note=hello"])
    assert plan_options(args) == {
        "note": "hello", "set": {"hnsw_config.m": 32, "on_disk_payload": True},
        "vectors_config": {"dense": {"size": 4, "distance": "Cosine"}}, "quantization": None,
        "indexes": {"tenant": "keyword", "n": {"type": "integer", "range": True}},
        "drop_indexes": ["old"], "vector_map": {"": "dense"}}
    assert args.kind == "copy" and args.to_model is None


def test_quantization_and_sparse_settings_round_trip_through_json() -> None:
    from qdrant_client import models

    q = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99))
    settings = {"vectors": {"size": 4, "distance": "Dot"}, "quantization_config": layouts._dump(q),
                "sparse_vectors": {"bm25": layouts._dump(models.SparseVectorParams())}}
    kwargs = layouts.create_kwargs(settings)
    assert kwargs["quantization_config"] == q
    assert kwargs["sparse_vectors_config"] == {"bm25": models.SparseVectorParams()}
    assert kwargs["vectors_config"] == models.VectorParams(size=4, distance=models.Distance.DOT)
    assert layouts.index_schemas({"payload_indexes": {"t": "keyword", "doc_id": "(keyword or integer, from a source value)"}}) \
        == {"t": models.PayloadSchemaType.KEYWORD}
