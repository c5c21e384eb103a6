"""The secondary of a gRPC client's mirrored upsert goes over the upstream's gRPC, its vectors as
packed floats (``dataplane/secondary_grpc.py``); a failure there falls back to REST, so the
secondary is level either way.

The pure encoder is checked by decoding its bytes with qdrant-client's protobuf; the mirror runs
in-process (executor, mirror, real upstream), the seam being the forward functions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qdrant_client import models
from qdrant_client import grpc as pb
from qdrant_client.conversions.conversion import RestToGrpc, grpc_to_payload, payload_to_grpc

from dataplane_reads_fixtures import MirrorWorld, mirror_executor, mirror_world
from switchyard.proxy.dataplane import secondary_grpc
from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest
from switchyard.proxy.dataplane.secondary_leg import STRIPPED
from switchyard.proxy.intercept.grpc_codec import payload_json
from switchyard.proxy.migration.planner import PlanRequest
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import META_APPROXIMATE, META_FIELDS, META_MODEL_ID
from switchyard.proxy.wire import GrpcCall, GrpcReply

A = ModelSpec(id="sg-a", provider="hashing", model="a", dimensions=8)
B = ModelSpec(id="sg-b", provider="hashing", model="b", dimensions=12)


def _point(pid: int, payload: dict[str, Any], dims: int = 8) -> pb.PointStruct:
    return RestToGrpc.convert_point_struct(models.PointStruct(id=pid, vector=[0.5] * dims, payload=payload))


@pytest.mark.parametrize("name", ["", "dense_b"])
def test_encoder_round_trips_through_protobuf(name: str) -> None:
    points = [_point(1, {"text": "a", "n": 1, "embedding_model_id": "old", META_APPROXIMATE: True,
                         DIGEST_FIELD: "stale"}),
              _point(2, {"text": "b", "nested": {"x": [1, 2.5, None]}})]
    rows = np.arange(2 * 12, dtype=np.float32).reshape(2, 12) / 7
    meta = secondary_grpc.payload_entries({META_MODEL_ID: B.id, "embedding_dimensions": 12})
    stripped = ("embedding_model_id", "embedding_dimensions", META_APPROXIMATE, DIGEST_FIELD)
    raw = secondary_grpc.upsert_request("docs_v2", points, ["d1", None], rows, name, meta, stripped, DIGEST_FIELD)
    msg = pb.UpsertPoints.FromString(raw)
    assert msg.collection_name == "docs_v2" and msg.wait
    first, second = (dict(p.payload) for p in msg.points)
    assert first["text"].string_value == "a" and first["n"].integer_value == 1
    assert first[META_MODEL_ID].string_value == B.id and META_APPROXIMATE not in first
    assert first[DIGEST_FIELD].string_value == "d1"
    assert DIGEST_FIELD not in second and list(second["nested"].struct_value.fields["x"].list_value.values)[1].double_value == 2.5
    for p, row in zip(msg.points, rows):
        vec = p.vectors.vectors.vectors[name] if name else p.vectors.vector
        assert np.array_equal(np.array(vec.dense.data, dtype=np.float32), row)
    assert [p.id.num for p in msg.points] == [1, 2]
    # consumed in place (the primary has been sent): vectors gone, and a second call agrees
    assert not points[0].HasField("vectors") and META_APPROXIMATE not in points[0].payload
    assert secondary_grpc.upsert_request("docs_v2", points, ["d1", None], rows, name, meta, stripped,
                                         DIGEST_FIELD) == raw


@pytest.mark.parametrize("client", [
    {"text": "a"},
    {"text": "a", META_APPROXIMATE: True},  # a stripped key the client sent: found through ``sent``
    {"text": "a", DIGEST_FIELD: "stale", "embedding_fingerprint": "theirs"},
])
def test_skipping_lookups_by_the_sent_payload_gives_the_same_bytes(client: dict[str, Any]) -> None:
    """With each point's sent payload and the stampable keys, ``upsert_request`` looks up only
    keys that can be there, and builds exactly the bytes of the full lookup, whether a stripped
    key came from the client or from the stamp (A's fingerprint, which B's metadata lacks)."""
    stamp = {META_MODEL_ID: A.id, "embedding_dimensions": 8, "embedding_fingerprint": "fp-a"}
    meta = secondary_grpc.payload_entries({META_MODEL_ID: B.id, "embedding_dimensions": 12})
    rows = np.ones((2, 12), dtype=np.float32)

    def stamped() -> list[pb.PointStruct]:  # as the primary got them: A's metadata filled in
        return [_point(i, {**stamp, **client}) for i in (1, 2)]

    full = secondary_grpc.upsert_request("t", stamped(), ["d", None], rows, "", meta, STRIPPED, DIGEST_FIELD)
    skipped = secondary_grpc.upsert_request("t", stamped(), ["d", None], rows, "", meta, STRIPPED, DIGEST_FIELD,
                                            [client, client], META_FIELDS)
    assert skipped == full
    first, second = (dict(p.payload) for p in pb.UpsertPoints.FromString(full).points)
    assert "embedding_fingerprint" not in first and META_APPROXIMATE not in second
    assert first[DIGEST_FIELD].string_value == "d" and DIGEST_FIELD not in second


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _JSON, max_size=6))
def test_payload_conversion_is_qdrant_clients(payload: dict[str, Any]) -> None:
    """The mirror's inline payload conversion gives what qdrant-client's ``grpc_to_payload``
    gives, value for value (NaN included: both print it as the string ``"NaN"``)."""
    values = pb.PointStruct(payload=payload_to_grpc(payload)).payload
    ours, theirs = payload_json(values), grpc_to_payload(values)
    assert orjson.dumps(ours, option=orjson.OPT_SORT_KEYS) == orjson.dumps(theirs, option=orjson.OPT_SORT_KEYS)
    assert [type(v) for v in ours.values()] == [type(theirs[k]) for k in ours]


@pytest.fixture
async def world(upstream: Any, prefix: str) -> AsyncIterator[MirrorWorld]:
    async with mirror_world(upstream, f"{prefix}docs", (A, B), lambda source: PlanRequest(logical=source, to_model=B.id)) as w:
        yield w


def _upsert(w: MirrorWorld, ids: range) -> bytes:
    msg = pb.UpsertPoints(collection_name=w.source, wait=True,
                          points=[_point(i, {"text": f"doc {i} about gamma", "doc_id": f"d{i}"}) for i in ids])
    return msg.SerializeToString()


async def _target_state(w: MirrorWorld, ids: range) -> dict[int, Any]:
    got = await w.client.retrieve(w.m.target, list(ids), with_payload=True, with_vectors=True)
    return {int(p.id): p for p in got}


@pytest.mark.parametrize("fails", [False, True], ids=["grpc", "grpc-fails-rest-writes"])
async def test_grpc_clients_secondary(world: MirrorWorld, tmp_path: Path, fails: bool) -> None:
    w = world
    sent: list[GrpcCall] = []

    async def leg(call: GrpcCall) -> GrpcReply:
        sent.append(call)
        if fails:
            return GrpcReply(None, "UNAVAILABLE", "upstream gRPC down (test)")
        return await w.fw.grpc_upstream.call(call)

    executor, pool = await mirror_executor(w, tmp_path / "spool.jsonl", leg)
    try:
        reply = await executor.grpc(GrpcCall("/qdrant.Points/Upsert", _upsert(w, range(1, 6)), ()), w.fw.grpc)
        assert reply.ok, (reply.code, reply.details)
        assert [c.method for c in sent] == [secondary_grpc.METHOD]
        assert w.m is not None
        rest_upserts = [c for c in w.fw.rest_calls if c.method == "PUT" and w.m.target in c.path]
        assert len(rest_upserts) == (1 if fails else 0)  # REST writes it only when gRPC failed
        target = await _target_state(w, range(1, 6))
        expected = await pool.embed(B, [f"doc {i} about gamma" for i in range(1, 6)])
        source = {int(p.id): p for p in await w.client.retrieve(w.source, list(range(1, 6)), with_payload=True)}
        for i, row in zip(range(1, 6), expected):
            p = target[i]
            assert p.payload is not None and p.payload[META_MODEL_ID] == B.id and p.payload["doc_id"] == f"d{i}"
            assert p.payload[DIGEST_FIELD] == source_digest(source[i].payload)
            assert np.allclose(np.asarray(p.vector, dtype=np.float32), row / np.linalg.norm(row), atol=1e-6)
        if fails:  # the leg rests after a failure: the next write goes straight to REST
            reply = await executor.grpc(GrpcCall("/qdrant.Points/Upsert", _upsert(w, range(6, 8)), ()), w.fw.grpc)
            assert reply.ok and len(sent) == 1
            assert len(await _target_state(w, range(6, 8))) == 2
    finally:
        await pool.aclose()
