"""Reads of a split migration's logical name after ``switch-reads``, over gRPC.

The gRPC form of :mod:`switchyard.proxy.dataplane.split_exec`, with the same decisions
(``split_reads``): ``Query``, ``Search``, ``Scroll`` (without ``order_by``), ``Count`` and ``Get``
are routed to the one target their filter pins, or fanned out and merged (by score with
``offset + limit`` asked of each target; by id with ``limit + 1``; counts summed; retrieved points
in request order). Other methods go to the one pinned target, else are refused
(``INVALID_ARGUMENT``) with the reason. An inference object (``Document``) naming model A is
renamed to each target's model, so the proxy embeds the query with that target's model. A
target's error reply is returned as it came.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from qdrant_client.conversions.conversion import GrpcToRest
from qdrant_client.grpc import points_pb2

from switchyard.proxy.dataplane import split_reads as sr
from switchyard.proxy.dataplane.split_routing import SplitLayout
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.intercept.routes import rename_grpc
from switchyard.proxy.wire import GrpcCall, GrpcReply

Send = Callable[[str, GrpcCall], Awaitable[GrpcReply]]
SPLIT_HEADER = "x-switchyard-split"

_REQUESTS: dict[str, Any] = {
    "Query": points_pb2.QueryPoints, "Search": points_pb2.SearchPoints, "Scroll": points_pb2.ScrollPoints,
    "Count": points_pb2.CountPoints, "Get": points_pb2.GetPoints, "QueryGroups": points_pb2.QueryPointGroups,
    "SearchGroups": points_pb2.SearchPointGroups, "Recommend": points_pb2.RecommendPoints,
    "Discover": points_pb2.DiscoverPoints, "Facet": points_pb2.FacetCounts,
}
_RESPONSES: dict[str, Any] = {
    "Query": points_pb2.QueryResponse, "Search": points_pb2.SearchResponse, "Scroll": points_pb2.ScrollResponse,
    "Count": points_pb2.CountResponse, "Get": points_pb2.GetResponse,
}


def _filter_of(msg: Any) -> Any:
    field = "filter"
    if not any(f.name == field for f in msg.DESCRIPTOR.fields) or not msg.HasField(field):
        return None
    return GrpcToRest.convert_filter(msg.filter).model_dump(mode="json", exclude_none=True)


def retarget_document(msg: Any, names: Sequence[str], model: str) -> bool:
    """Rename ``Document`` models naming one of ``names`` in a Query's ``query`` and prefetches
    to ``model`` (in place); True when something changed."""
    changed = False
    queries = [msg.query] if msg.HasField("query") else []
    queries += [p.query for p in msg.prefetch if p.HasField("query")]
    for q in queries:
        if q.WhichOneof("variant") == "nearest" and q.nearest.WhichOneof("variant") == "document" \
                and q.nearest.document.model in names:
            q.nearest.document.model = model
            changed = True
    return changed


class SplitGrpcReader:
    """Stateless: every call gets the layout, the targets' distance and the sender."""

    async def grpc(self, call: GrpcCall, layout: SplitLayout, distance: str, send: Send) -> GrpcReply:
        name = call.method.rsplit("/", 1)[-1]
        cls = _REQUESTS.get(name)
        if cls is None:
            raise BadRequest(f"split: gRPC {name} on a split logical name is not routed; use REST or a target")
        msg = cls.FromString(call.request)
        if name == "Get":
            return await self._get(call, msg, layout, send)
        route = sr.targets_for(layout, _filter_of(msg))
        if (why := sr.check_fanout(layout, route)) is not None:
            raise BadRequest(why)
        if route.single:
            target = route.collections[0]
            reply = await send(target, call.with_request(rename_grpc(call.request, target)))
            return _tagged(reply, route.reason)
        if name in ("Query", "Search"):
            return await self._scored(call, name, msg, route, distance, send)
        if name == "Scroll" and not msg.HasField("order_by"):
            return await self._scroll(call, msg, route, send)
        if name == "Count":
            answers = await _all(send, call, route.collections, msg, "Count")
            if isinstance(answers, GrpcReply):
                return answers
            out = points_pb2.CountResponse(time=0.0)
            out.result.count = sr.merge_count([a.result.count for a in answers])
            return _tagged(GrpcReply(out.SerializeToString()), route.reason)
        raise BadRequest(f"split: {name} cannot be merged across {len(route.collections)} targets; "
                         f"pin {', '.join(layout.fields)} with must/match in the filter")

    async def _scored(self, call: GrpcCall, name: str, msg: Any, route: sr.ReadRoute, distance: str,
                      send: Send) -> GrpcReply:
        started = time.perf_counter()
        limit, offset = _opt(msg, "limit", 10), _opt(msg, "offset", 0)
        side = type(msg)()
        side.CopyFrom(msg)
        side.limit = sr.fanout_limit(int(limit), int(offset))
        side.offset = 0
        answers = await _all(send, call, route.collections, side, name)
        if isinstance(answers, GrpcReply):
            return answers
        hits = [[{"score": p.score, "p": p} for p in a.result] for a in answers]
        merged = sr.merge_scored(hits, int(limit), int(offset), distance)
        out = _RESPONSES[name](time=time.perf_counter() - started)
        out.result.extend([h["p"] for h in merged])
        return _tagged(GrpcReply(out.SerializeToString()), route.reason)

    async def _scroll(self, call: GrpcCall, msg: Any, route: sr.ReadRoute, send: Send) -> GrpcReply:
        started = time.perf_counter()
        limit = int(_opt(msg, "limit", 10))
        side = points_pb2.ScrollPoints()
        side.CopyFrom(msg)
        side.limit = limit + 1
        answers = await _all(send, call, route.collections, side, "Scroll")
        if isinstance(answers, GrpcReply):
            return answers
        pages = [[{"id": _pid(p.id), "p": p} for p in a.result] for a in answers]
        page, nxt = sr.merge_scroll(pages, limit)
        out = points_pb2.ScrollResponse(time=time.perf_counter() - started)
        out.result.extend([x["p"] for x in page])
        if nxt is not None:
            chosen = next(x["p"] for pg in pages for x in pg if x["id"] == nxt)
            out.next_page_offset.CopyFrom(chosen.id)
        return _tagged(GrpcReply(out.SerializeToString()), route.reason)

    async def _get(self, call: GrpcCall, msg: Any, layout: SplitLayout, send: Send) -> GrpcReply:
        started = time.perf_counter()
        answers = await _all(send, call, layout.collections, msg, "Get")
        if isinstance(answers, GrpcReply):
            return answers
        found = [[{"id": _pid(p.id), "p": p} for p in a.result] for a in answers]
        joined = sr.merge_retrieve([_pid(i) for i in msg.ids], found)
        out = points_pb2.GetResponse(time=time.perf_counter() - started)
        out.result.extend([x["p"] for x in joined])
        return _tagged(GrpcReply(out.SerializeToString()), "split: retrieved from all targets")


def _opt(msg: Any, name: str, default: int) -> int:
    """An optional scalar's value (``default`` when unset); plain proto3 scalars as they are."""
    try:
        return int(getattr(msg, name)) if msg.HasField(name) else default
    except ValueError:  # not an optional field (SearchPoints.limit)
        return int(getattr(msg, name))


def _pid(point_id: Any) -> Any:
    return point_id.num if point_id.WhichOneof("point_id_options") == "num" else point_id.uuid


def _tagged(reply: GrpcReply, reason: str) -> GrpcReply:
    from dataclasses import replace

    return replace(reply, initial_metadata=(*reply.initial_metadata, (SPLIT_HEADER, reason)))


async def _all(send: Send, call: GrpcCall, names: Sequence[str], msg: Any, name: str) -> list[Any] | GrpcReply:
    raw = msg.SerializeToString()
    replies = await asyncio.gather(*(send(n, call.with_request(rename_grpc(raw, n))) for n in names))
    for r in replies:
        if not r.ok or r.response is None:
            return r
    return [_RESPONSES[name].FromString(r.response) for r in replies]


async def grpc_read(reader: Any, call: GrpcCall, m: Any, snap: Any, forward: Any) -> GrpcReply:
    """The executor's entry point (see ``split_exec.rest_read``)."""
    from switchyard.proxy.dataplane.split_mirror import layout_of, specs_by_target

    spec_a = snap.models.get(m.model_a)
    names = tuple(n for n in (m.model_a, getattr(spec_a, "model", None)) if n)
    models = specs_by_target(m)
    distance = str(getattr(spec_a, "distance", "Cosine"))

    async def send(name: str, c: GrpcCall) -> GrpcReply:
        model = models.get(name)
        if model and c.method.endswith("/Query"):
            msg = points_pb2.QueryPoints.FromString(c.request)
            if retarget_document(msg, names, model):
                c = c.with_request(msg.SerializeToString())
        return await reader.resolve_inference_grpc(c, name, snap, forward)  # type: ignore[no-any-return]

    return await SplitGrpcReader().grpc(call, layout_of(m), distance, send)
