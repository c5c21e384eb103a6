"""The gRPC side of ``query_codec``: similarity reads as ``qdrant_client.grpc`` messages.

Same contract as the REST codec: decode the client's request once, and per side serialise a
copy with only the collection name, the slot vectors, ``limit`` / ``offset``, the threshold and
the payload selector changed; every other field is the client's. Vector slots are found by
walking the message in a fixed order, so the i-th slot of a copy is the i-th of the original.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.message import DecodeError, Message
from qdrant_client import grpc as pb

from switchyard.proxy.dataplane.query_codec import (
    GRPC_READS, Rewrite, SimilarityRead, SubRead, canonical_group, canonical_id,
)
from switchyard.proxy.dataplane.query_vectors import SlotInfo

Setter = Callable[[list[float]], None]
Slot = tuple[Setter, SlotInfo]

#: method -> (request class, batch field or "", response class)
_MESSAGES: dict[str, tuple[type[Any], str, type[Any]]] = {
    "Query": (pb.QueryPoints, "", pb.QueryResponse),
    "QueryBatch": (pb.QueryBatchPoints, "query_points", pb.QueryBatchResponse),
    "QueryGroups": (pb.QueryPointGroups, "", pb.QueryGroupsResponse),
    "Search": (pb.SearchPoints, "", pb.SearchResponse),
    "SearchBatch": (pb.SearchBatchPoints, "search_points", pb.SearchBatchResponse),
    "SearchGroups": (pb.SearchPointGroups, "", pb.SearchGroupsResponse),
    "Recommend": (pb.RecommendPoints, "", pb.RecommendResponse),
    "RecommendBatch": (pb.RecommendBatchPoints, "recommend_points", pb.RecommendBatchResponse),
    "RecommendGroups": (pb.RecommendPointGroups, "", pb.RecommendGroupsResponse),
    "Discover": (pb.DiscoverPoints, "", pb.DiscoverResponse),
    "DiscoverBatch": (pb.DiscoverBatchPoints, "discover_points", pb.DiscoverBatchResponse),
}


def _vector_input(vi: Any) -> Iterator[Slot]:
    kind = vi.WhichOneof("variant")
    if kind == "dense":
        yield (lambda v: vi.dense.data.__setitem__(slice(None), v)), SlotInfo(dims=len(vi.dense.data), vector=tuple(vi.dense.data))
    elif kind == "document":
        yield (lambda v: vi.dense.CopyFrom(pb.DenseVector(data=v))), SlotInfo(
            text=vi.document.text, model=vi.document.model)


def _vector(vec: Any) -> Iterator[Slot]:
    """A legacy ``Vector`` (recommend / discover examples)."""
    kind = vec.WhichOneof("vector")
    if kind == "dense":
        yield (lambda v: vec.dense.data.__setitem__(slice(None), v)), SlotInfo(dims=len(vec.dense.data), vector=tuple(vec.dense.data))
    elif kind == "document":
        yield (lambda v: vec.dense.CopyFrom(pb.DenseVector(data=v))), SlotInfo(
            text=vec.document.text, model=vec.document.model)
    elif kind is None and len(vec.data) and not vec.HasField("indices"):
        yield (lambda v: vec.data.__setitem__(slice(None), v)), SlotInfo(dims=len(vec.data), vector=tuple(vec.data))


def _example(ex: Any) -> Iterator[Slot]:
    if ex.WhichOneof("example") == "vector":
        yield from _vector(ex.vector)


def _query(q: Any) -> Iterator[Slot]:
    kind = q.WhichOneof("variant")
    if kind == "nearest":
        yield from _vector_input(q.nearest)
    elif kind == "nearest_with_mmr":
        yield from _vector_input(q.nearest_with_mmr.nearest)
    elif kind == "recommend":
        for vi in (*q.recommend.positive, *q.recommend.negative):
            yield from _vector_input(vi)
    elif kind == "discover":
        yield from _vector_input(q.discover.target)
        for pair in q.discover.context.pairs:
            yield from _vector_input(pair.positive)
            yield from _vector_input(pair.negative)
    elif kind == "context":
        for pair in q.context.pairs:
            yield from _vector_input(pair.positive)
            yield from _vector_input(pair.negative)


def _prefetch(items: Any) -> Iterator[Slot]:
    for item in items:
        if item.HasField("query"):
            yield from _query(item.query)
        yield from _prefetch(item.prefetch)


def grpc_slots(family: str, msg: Any) -> list[Slot]:
    """Every vector slot of a sub-request message, in a fixed order, with a setter."""
    out: list[Slot] = []
    if family == "query":
        if msg.HasField("query"):
            out += _query(msg.query)
        out += _prefetch(msg.prefetch)
    elif family == "search":
        if len(msg.vector) and not msg.HasField("sparse_indices"):
            out.append(((lambda v: msg.vector.__setitem__(slice(None), v)), SlotInfo(dims=len(msg.vector), vector=tuple(msg.vector))))
    elif family == "recommend":
        for vec in (*msg.positive_vectors, *msg.negative_vectors):
            out += _vector(vec)
    elif family == "discover":
        if msg.HasField("target"):
            out += _example(msg.target.single)
        for pair in msg.context:
            out += _example(pair.positive)
            out += _example(pair.negative)
    return out


def _sub(family: str, shape: str, msg: Any) -> SubRead:
    has = msg.HasField
    fields = msg.DESCRIPTOR.fields_by_name
    limit = msg.limit if ("limit" in fields and (not _optional(msg, "limit") or has("limit"))) else 10
    offset = msg.offset if "offset" in fields and has("offset") and shape != "groups" else 0
    threshold = msg.score_threshold if "score_threshold" in fields and has("score_threshold") else None
    group_size = 1
    if shape == "groups":
        group_size = msg.group_size if (not _optional(msg, "group_size") or has("group_size")) else 3
    ranked = True
    if family == "query":
        variant = msg.query.WhichOneof("variant") if msg.HasField("query") else None
        ranked = variant not in ("order_by", "sample") and (variant is not None or len(msg.prefetch) > 0)
    return SubRead(msg, [i for _, i in grpc_slots(family, msg)], int(limit) or 10, int(offset),
                   threshold, int(group_size) or 3, ranked)


def _optional(msg: Any, name: str) -> bool:
    return msg.DESCRIPTOR.fields_by_name[name].has_presence


def decode_grpc(method: str, raw: bytes) -> SimilarityRead | None:
    name = method.rsplit("/", 1)[-1]
    if name not in _MESSAGES or name not in GRPC_READS:
        return None
    cls, batch_field, _ = _MESSAGES[name]
    family, shape = GRPC_READS[name]
    try:
        msg = cls.FromString(raw)
    except DecodeError:
        return None
    if batch_field:
        subs = [_sub(family, shape, m) for m in getattr(msg, batch_field)]
        return SimilarityRead("grpc", family, shape, msg.collection_name, subs, msg, name)
    return SimilarityRead("grpc", family, shape, msg.collection_name, [_sub(family, shape, msg)], None, name)


def ensure_payload_field(sel: Any, name: str) -> None:
    """Make a ``WithPayloadSelector`` return at least ``name`` (in place)."""
    kind = sel.WhichOneof("selector_options")
    if kind == "enable" and sel.enable:
        return
    if kind == "include":
        if name not in sel.include.fields:
            sel.include.fields.append(name)
    elif kind == "exclude":
        kept = [f for f in sel.exclude.fields if f != name]
        del sel.exclude.fields[:]
        sel.exclude.fields.extend(kept)
    else:
        sel.include.CopyFrom(pb.PayloadIncludeSelector(fields=[name]))


def _wants_field(msg: Any, name: str) -> tuple[bool, bool]:
    """(field wanted, any payload wanted) by the client's selector."""
    if not msg.HasField("with_payload"):
        return False, False
    sel = msg.with_payload
    kind = sel.WhichOneof("selector_options")
    if kind == "enable":
        return sel.enable, sel.enable
    if kind == "include":
        return name in sel.include.fields, True
    if kind == "exclude":
        return name not in sel.exclude.fields, True
    return False, False


class GrpcQueryCodec:
    """:class:`ReadCodec` over ``qdrant.Points`` protobuf messages."""

    def side_body(self, read: SimilarityRead, parts: list[tuple[int, Rewrite]], collection: str) -> bytes:
        msgs = [self._rewrite(read, read.subs[i], rw, collection) for i, rw in parts]
        if read.shape == "batch":
            env = type(read.envelope)()
            env.CopyFrom(read.envelope)
            env.collection_name = collection
            field = getattr(env, _MESSAGES[read.rest][1])
            del field[:]
            field.extend(msgs)
            return bytes(env.SerializeToString())
        return bytes(msgs[0].SerializeToString())

    @staticmethod
    def _rewrite(read: SimilarityRead, sub: SubRead, rw: Rewrite, collection: str) -> Message:
        msg = type(sub.body)()
        msg.CopyFrom(sub.body)
        msg.collection_name = collection
        slots = grpc_slots(read.family, msg)
        for index, vector in rw.vectors.items():
            slots[index][0](vector)
        if rw.limit is not None:
            msg.limit = rw.limit
            if read.shape != "groups" and "offset" in msg.DESCRIPTOR.fields_by_name:
                msg.offset = 0
        if rw.strip_threshold and "score_threshold" in msg.DESCRIPTOR.fields_by_name:
            msg.ClearField("score_threshold")
        if rw.payload_field is not None:
            ensure_payload_field(msg.with_payload, rw.payload_field)
        return msg

    def parse(self, read: SimilarityRead, body: bytes) -> list[Any]:
        resp = _MESSAGES[read.rest][2].FromString(body)
        if read.shape == "groups":
            return [list(resp.result.groups)]
        if read.shape == "batch":
            return [list(r.result) for r in resp.result]
        return [list(resp.result)]

    def encode(self, read: SimilarityRead, results: list[Any], elapsed: float) -> bytes:
        cls = _MESSAGES[read.rest][2]
        if read.shape == "groups":
            resp = cls(result=pb.GroupsResult(groups=results[0]), time=elapsed)
        elif read.shape == "batch":
            resp = cls(result=[pb.BatchResult(result=r) for r in results], time=elapsed)
        else:
            resp = cls(result=results[0], time=elapsed)
        return bytes(resp.SerializeToString())

    def point_id(self, point: Any) -> str:
        pid = point.id
        return str(pid.num) if pid.WhichOneof("point_id_options") == "num" else canonical_id(pid.uuid)

    def point_field(self, point: Any, name: str) -> Any:
        if name not in point.payload:
            return None
        value = point.payload[name]
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            return value.string_value
        if kind == "integer_value":
            return value.integer_value
        return None

    def score(self, point: Any) -> float:
        return float(point.score)

    def with_score(self, point: Any, score: float) -> Any:
        out = pb.ScoredPoint()
        out.CopyFrom(point)
        out.score = score
        return out

    def prune(self, point: Any, sub: SubRead, name: str) -> Any:
        wanted, any_payload = _wants_field(sub.body, name)
        if wanted or name not in point.payload:
            return point if wanted or any_payload else _without_payload(point)
        out = pb.ScoredPoint()
        out.CopyFrom(point)
        if any_payload:
            del out.payload[name]
        else:
            out.ClearField("payload")
        return out

    def group_parts(self, group: Any) -> tuple[str, list[Any]]:
        gid = group.id
        kind = gid.WhichOneof("kind")
        return canonical_group(getattr(gid, kind) if kind else None), list(group.hits)

    def make_group(self, group: Any, hits: list[Any]) -> Any:
        out = pb.PointGroup()
        out.CopyFrom(group)
        del out.hits[:]
        out.hits.extend(hits)
        return out


def _without_payload(point: Any) -> Any:
    if not len(point.payload):
        return point
    out = pb.ScoredPoint()
    out.CopyFrom(point)
    out.ClearField("payload")
    return out
