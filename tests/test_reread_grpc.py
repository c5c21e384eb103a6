"""A copy-vectors mirror re-reads the primary over gRPC, vectors as numpy rows
(``dataplane/reread_grpc.py``); the points equal the REST re-read's for everything the mirror
reads (ids, payloads, the vector digest and the vector values), and a failed gRPC re-read falls
back to REST, so the secondary is level either way.

The pure decoder is checked against qdrant-client's own reading of the same messages; the mirror
runs in-process (executor, mirror, real upstream), the seam being the forward functions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qdrant_client import grpc as pb
from qdrant_client.conversions.conversion import GrpcToRest, payload_to_grpc

from dataplane_reads_fixtures import MirrorWorld, mirror_executor, mirror_world
from switchyard.proxy.dataplane import reread_grpc
from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest, vector_repr
from switchyard.proxy.migration.planner import PlanRequest
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.wire import GrpcCall, GrpcReply, RestCall

_F32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
_ROW = st.lists(_F32, min_size=1, max_size=6)


def _dense_new(row: list[float]) -> pb.VectorOutput:
    return pb.VectorOutput(dense=pb.DenseVector(data=row))


def _dense_legacy(row: list[float]) -> pb.VectorOutput:
    return pb.VectorOutput(data=row)


def _sparse(pairs: list[tuple[int, float]]) -> pb.VectorOutput:
    return pb.VectorOutput(sparse=pb.SparseVector(indices=[i for i, _ in pairs], values=[v for _, v in pairs]))


def _sparse_legacy(pairs: list[tuple[int, float]]) -> pb.VectorOutput:
    return pb.VectorOutput(data=[v for _, v in pairs], indices=pb.SparseIndices(data=[i for i, _ in pairs]))


def _multi(rows: list[list[float]]) -> pb.VectorOutput:
    return pb.VectorOutput(multi_dense=pb.MultiDenseVector(vectors=[pb.DenseVector(data=r) for r in rows]))


_SPARSE_PAIRS = st.lists(st.tuples(st.integers(0, 2**32 - 1), _F32), max_size=4, unique_by=lambda p: p[0])
_DENSE = (_ROW.map(_dense_new) | _ROW.map(_dense_legacy)
          | st.integers(1, 3).flatmap(lambda d: st.lists(st.lists(_F32, min_size=d, max_size=d), min_size=1,
                                                         max_size=3)).map(_multi))
_ONE = _DENSE | _SPARSE_PAIRS.map(_sparse) | _SPARSE_PAIRS.filter(bool).map(_sparse_legacy)
_VECTORS = (_DENSE.map(lambda v: pb.VectorsOutput(vector=v))  # sparse vectors are always named
            | st.dictionaries(st.sampled_from(["a", "dense", "ü"]), _ONE, min_size=1, max_size=3).map(
                lambda d: pb.VectorsOutput(vectors=pb.NamedVectorsOutput(vectors=d))))
_PAYLOAD = st.dictionaries(st.text(max_size=4), st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                           | st.text(max_size=5) | st.lists(st.integers(0, 9), max_size=3), max_size=3)
_ID = st.integers(0, 2**64 - 1).map(lambda n: pb.PointId(num=n)) | st.uuids().map(lambda u: pb.PointId(uuid=str(u)))


def _values(vector: Any) -> Any:
    """A vector's values as float32 numbers in nested lists (either form), for equality."""
    if vector is None:
        return None
    if isinstance(vector, dict):
        if set(vector) == {"indices", "values"}:
            return {"indices": list(vector["indices"]), "values": np.asarray(vector["values"], np.float32).tolist()}
        return {name: _values(v) for name, v in vector.items()}
    return np.asarray(vector, dtype=np.float32).tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_ID, _PAYLOAD, st.none() | _VECTORS), max_size=5))
def test_points_read_as_qdrant_client_reads_them(rows: list[tuple[pb.PointId, dict[str, Any], Any]]) -> None:
    msg = pb.GetResponse(result=[
        pb.RetrievedPoint(id=pid, payload=payload_to_grpc(payload), **({} if v is None else {"vectors": v}))
        for pid, payload, v in rows])
    got = reread_grpc.points(msg.SerializeToString())
    assert got is not None
    want = [GrpcToRest.convert_retrieved_point(p).model_dump(mode="json") for p in msg.result]
    assert [p["id"] for p in got] == [w["id"] for w in want]
    assert [p["payload"] for p in got] == [w["payload"] or {} for w in want]
    for p, w in zip(got, want):
        assert vector_repr(p["vector"]) == vector_repr(w["vector"])  # the digest the target records
        printed = orjson.loads(orjson.dumps(p["vector"], option=orjson.OPT_SERIALIZE_NUMPY))
        assert _values(printed) == _values(w["vector"])  # the secondary's body: the same floats


def test_ids_grpc_cannot_carry_leave_the_reread_to_rest() -> None:
    raw = reread_grpc.get_request("c", [0, 2**64 - 1, "5f1d3b0e-0000-4000-8000-000000000001"])
    assert raw is not None
    msg = pb.GetPoints.FromString(raw)
    assert (msg.collection_name, msg.with_payload.enable, msg.with_vectors.enable) == ("c", True, True)
    assert [(i.num, i.uuid) for i in msg.ids] == [(0, ""), (2**64 - 1, ""), (0, "5f1d3b0e-0000-4000-8000-000000000001")]
    for bad in (2**64, -1, 1.5, True, None):
        assert reread_grpc.get_request("c", [1, bad]) is None, bad


def test_an_unknown_vector_kind_leaves_the_reread_to_rest() -> None:
    odd = pb.VectorOutput(multi_dense=pb.MultiDenseVector())  # a multivector with no rows
    msg = pb.GetResponse(result=[pb.RetrievedPoint(id=pb.PointId(num=1), vectors=pb.VectorsOutput(vector=odd))])
    assert reread_grpc.points(msg.SerializeToString()) is None


# -- the mirror, in-process, over a real upstream

A = ModelSpec(id="rr-a", provider="hashing", model="a", dimensions=8)


@pytest.fixture
async def world(upstream: Any, prefix: str) -> AsyncIterator[MirrorWorld]:
    def plan(source: str) -> PlanRequest:  # a copy: a collection-config change, vectors carried over
        return PlanRequest(logical=source, kind="copy", options={"set": {"hnsw_config.m": 32}})

    async with mirror_world(upstream, f"{prefix}rrdocs", (A,), plan) as w:
        yield w


@pytest.mark.parametrize("fails", [False, True], ids=["grpc", "grpc-fails-rest-reads"])
async def test_copy_mirror_rereads_over_grpc(world: MirrorWorld, tmp_path: Path, fails: bool) -> None:
    w = world
    sent: list[str] = []

    async def leg(call: GrpcCall) -> GrpcReply:
        sent.append(call.method)
        if fails:
            return GrpcReply(None, "UNAVAILABLE", "upstream gRPC down (test)")
        return await w.fw.grpc_upstream.call(call)

    executor, pool = await mirror_executor(w, tmp_path / "spool.jsonl", leg)
    rng = np.random.default_rng(5)
    vectors = {i: rng.normal(size=8).astype(np.float32).tolist() for i in range(1, 6)}
    body = orjson.dumps({"points": [{"id": i, "vector": v, "payload": {"text": f"t{i}", "n": i}}
                                    for i, v in vectors.items()]})
    try:
        reply = await executor.rest(RestCall("PUT", f"/collections/{w.source}/points", "wait=true", (), body), w.fw.rest)
        assert reply.ok, reply.body
        assert sent == [reread_grpc.METHOD]
        rereads = [c for c in w.fw.rest_calls if c.method == "POST" and c.path == f"/collections/{w.source}/points"]
        assert len(rereads) == (1 if fails else 0)  # REST re-reads only when gRPC failed
        source = {int(p.id): p for p in await w.client.retrieve(w.source, list(vectors), with_payload=True, with_vectors=True)}
        target = {int(p.id): p for p in await w.client.retrieve(w.m.target, list(vectors), with_payload=True, with_vectors=True)}
        assert sorted(target) == sorted(vectors)
        for i in vectors:
            s, t = source[i], target[i]
            assert np.array_equal(np.asarray(t.vector, np.float32), np.asarray(s.vector, np.float32)), i
            assert t.payload is not None and s.payload is not None and t.payload["text"] == f"t{i}"
            assert t.payload[DIGEST_FIELD] == source_digest(s.payload, vector_repr(s.vector))
    finally:
        await pool.aclose()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-300, 600, width=32) | st.sampled_from([0.5, 1.5, 2.5, -0.5, 254.5, 255.5]), min_size=1,
                max_size=8))
def test_uint8_targets_round_a_reread_row_as_a_list(values: list[float]) -> None:
    """``copy.convert`` rounds a carried-over vector for a ``uint8`` target the same way whether
    it came as a list (the REST re-read) or a numpy row (the gRPC one): half to even, clipped."""
    from switchyard.proxy.migration.kinds.copy import convert

    row = np.asarray(values, dtype=np.float32)
    as_list = convert({"v": row.tolist()}, {}, ("v",))["v"]
    as_row = convert({"v": row}, {}, ("v",))["v"]
    assert orjson.dumps(as_row, option=orjson.OPT_SERIALIZE_NUMPY) == orjson.dumps(as_list)
