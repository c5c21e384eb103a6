"""The I/O half of merged reads, per protocol: send one side, look doc keys up in the target.

Each transport wraps the client's call and the front end's ``forward``: side calls keep the
client's headers / metadata (credentials, deadline) and only change the collection and body.
``lookup`` answers "which of these source hits' documents exist in the target?" with as few
calls as possible: one Scroll with a ``MatchAny`` filter on the doc-key field (paged while
documents remain unresolved, bounded) and one retrieve by ids for hits keyed by their id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from qdrant_client import grpc as pb

from switchyard.proxy.dataplane.query_codec import ReadCodec, RestQueryCodec, SimilarityRead
from switchyard.proxy.dataplane.query_codec_grpc import GrpcQueryCodec
from switchyard.proxy.intercept.routes import rename_grpc, rest_path
from switchyard.proxy.wire import GrpcCall, GrpcForward, GrpcReply, Headers, RestCall, RestForward, RestReply

MERGE_HEADER = "x-switchyard-merge"
_LOOKUP_PAGE = 256
_LOOKUP_PAGES = 16


def doc_key(codec: ReadCodec, point: Any, field: str) -> str:
    """The document a point belongs to: its doc-key payload value, else its canonical id."""
    value = codec.point_field(point, field)
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return f"k:{value}"
    return f"id:{codec.point_id(point)}"


def _split(codec: ReadCodec, points: Sequence[Any], field: str) -> tuple[list[str], list[int], list[Any]]:
    strs: list[str] = []
    ints: list[int] = []
    ids: list[Any] = []
    for p in points:
        value = codec.point_field(p, field)
        if isinstance(value, str):
            strs.append(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            ints.append(value)
        else:
            ids.append(p)
    return sorted(set(strs)), sorted(set(ints)), ids


def header_safe(text: str, limit: int | None = 300) -> str:
    """One line of ASCII (HTTP header and gRPC metadata safe), shortened to ``limit`` characters."""
    flat = " ".join(text.split()).encode("ascii", "replace").decode("ascii")
    return flat if limit is None else flat[:limit]


class RestTransport:
    codec: ReadCodec = RestQueryCodec()

    def __init__(self, call: RestCall, read: SimilarityRead, forward: RestForward) -> None:
        self.call, self.read, self.forward = call, read, forward

    async def send(self, collection: str, body: bytes) -> tuple[bool, bytes, RestReply]:
        reply = await self.forward(RestCall(
            "POST", rest_path(collection, self.read.rest), self.call.query, self.call.headers, body))
        return reply.ok, reply.body, reply

    async def passthrough(self, collection: str) -> RestReply:
        return await self.forward(self.call.with_path(rest_path(collection, self.read.rest)))

    def reply(self, body: bytes, header: str) -> RestReply:
        return RestReply(200, (("content-type", "application/json"), (MERGE_HEADER, header)), body)

    @staticmethod
    def annotate(reply: RestReply, header: str) -> RestReply:
        return RestReply(reply.status, (*reply.headers, (MERGE_HEADER, header)), reply.body)

    async def _post(self, collection: str, rest: str, body: dict[str, Any]) -> Any:
        reply = await self.forward(RestCall(
            "POST", rest_path(collection, rest), "", self.call.headers, orjson.dumps(body)))
        if not reply.ok:
            raise LookupError(f"lookup in {collection} answered {reply.status}")
        return orjson.loads(reply.body)["result"]

    async def lookup(self, collection: str, field: str, points: Sequence[Any], *,
                     by_ids: bool = False) -> set[str]:
        """Doc keys of ``points`` (source hits) whose documents the target holds."""
        strs, ints, by_id = _split(self.codec, points, field)
        if by_ids:
            strs, ints, by_id = [], [], list(points)
        found: set[str] = set()
        should = [{"key": field, "match": {"any": vals}} for vals in (strs, ints) if vals]
        wanted = len(strs) + len(ints)
        offset: Any = None
        for _ in range(_LOOKUP_PAGES if should else 0):
            body: dict[str, Any] = {"filter": {"should": should}, "limit": _LOOKUP_PAGE,
                                    "with_payload": [field], "with_vector": False}
            if offset is not None:
                body["offset"] = offset
            result = await self._post(collection, "/points/scroll", body)
            found |= {doc_key(self.codec, p, field) for p in result["points"]}
            offset = result.get("next_page_offset")
            if offset is None or len(found) >= wanted:
                break
        if by_id:
            ids = [p.get("id") for p in by_id]
            result = await self._post(collection, "/points",
                                      {"ids": ids, "with_payload": [field], "with_vector": False})
            found |= {doc_key(self.codec, p, field) for p in result}
        return found


class GrpcTransport:
    codec: ReadCodec = GrpcQueryCodec()

    def __init__(self, call: GrpcCall, read: SimilarityRead, forward: GrpcForward) -> None:
        self.call, self.read, self.forward = call, read, forward

    async def send(self, collection: str, body: bytes) -> tuple[bool, bytes, GrpcReply]:
        reply = await self.forward(self.call.with_request(body))
        return reply.ok, reply.response or b"", reply

    async def passthrough(self, collection: str) -> GrpcReply:
        return await self.forward(self.call.with_request(rename_grpc(self.call.request, collection)))

    def reply(self, body: bytes, header: str) -> GrpcReply:
        return GrpcReply(body, initial_metadata=((MERGE_HEADER, header),))

    @staticmethod
    def annotate(reply: GrpcReply, header: str) -> GrpcReply:
        return GrpcReply(reply.response, reply.code, reply.details,
                         (*reply.initial_metadata, (MERGE_HEADER, header)), reply.trailing_metadata)

    async def _unary(self, method: str, msg: Any, response: type[Any]) -> Any:
        reply = await self.forward(GrpcCall(f"/qdrant.Points/{method}", msg.SerializeToString(),
                                            self._metadata(), self.call.timeout))
        if not reply.ok:
            raise LookupError(f"lookup {method} answered {reply.code}: {reply.details}")
        return response.FromString(reply.response or b"")

    def _metadata(self) -> Headers:
        return self.call.metadata

    async def lookup(self, collection: str, field: str, points: Sequence[Any], *,
                     by_ids: bool = False) -> set[str]:
        """Doc keys of ``points`` (source hits) whose documents the target holds."""
        strs, ints, by_id = _split(self.codec, points, field)
        if by_ids:
            strs, ints, by_id = [], [], list(points)
        found: set[str] = set()
        should = []
        if strs:
            should.append(pb.Condition(field=pb.FieldCondition(
                key=field, match=pb.Match(keywords=pb.RepeatedStrings(strings=strs)))))
        if ints:
            should.append(pb.Condition(field=pb.FieldCondition(
                key=field, match=pb.Match(integers=pb.RepeatedIntegers(integers=ints)))))
        offset: Any = None
        for _ in range(_LOOKUP_PAGES if should else 0):
            msg = pb.ScrollPoints(
                collection_name=collection, filter=pb.Filter(should=should), limit=_LOOKUP_PAGE,
                with_payload=pb.WithPayloadSelector(include=pb.PayloadIncludeSelector(fields=[field])),
                with_vectors=pb.WithVectorsSelector(enable=False))
            if offset is not None:
                msg.offset.CopyFrom(offset)
            resp = await self._unary("Scroll", msg, pb.ScrollResponse)
            found |= {doc_key(self.codec, p, field) for p in resp.result}
            offset = resp.next_page_offset if resp.HasField("next_page_offset") else None
            if offset is None or len(found) >= len(strs) + len(ints):
                break
        if by_id:
            msg = pb.GetPoints(
                collection_name=collection, ids=[p.id for p in by_id],
                with_payload=pb.WithPayloadSelector(include=pb.PayloadIncludeSelector(fields=[field])),
                with_vectors=pb.WithVectorsSelector(enable=False))
            resp = await self._unary("Get", msg, pb.GetResponse)
            found |= {doc_key(self.codec, p, field) for p in resp.result}
        return found
