"""Reads of a split migration's logical name after ``switch-reads`` (REST), over the proxy's forward.

:meth:`SplitReader.rest` answers a point read on the logical name from the targets
(``split_reads`` decides which and merges):

* a read whose filter pins the split key to one target is that target's own answer (the
  client's request, renamed: byte for byte what searching the target directly answers);
* otherwise the read is sent to every allowed target at once, bounded by
  ``split_reads.MAX_FANOUT``, and merged: ``search`` / ``query`` by score (each target asked for
  ``offset + limit`` from offset 0), ``scroll`` by point id (each asked for ``limit + 1``),
  ``count`` summed, retrieve (``POST /points``, ``GET /points/{id}``) joined in request order;
  batches merge per sub-request.
* Reads that cannot be merged across collections (groups, recommend / discover by example ids,
  matrices, facets, scroll with ``order_by``) on more than one target are refused (400) with the
  reason, never answered from one target as if it were all: pin the split field to route them.

A target's error answer is returned to the client as is (every target is a primary of the read).
Every answer carries ``x-switchyard-split: <reason>``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import orjson

from switchyard.proxy.dataplane import split_reads as sr
from switchyard.proxy.dataplane.split_routing import SplitLayout
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.intercept.routes import rest_path
from switchyard.proxy.wire import RestCall, RestReply

#: Sends a call (already addressed to ``name``) to target ``name``; the executor's sender also
#: embeds inference objects with that target's model (``retarget_inference``).
Send = Callable[[str, RestCall], Awaitable[RestReply]]

SPLIT_HEADER = "x-switchyard-split"
_SCORED = {"/points/search": "list", "/points/query": "points"}
_BATCH = {"/points/search/batch": "/points/search", "/points/query/batch": "/points/query"}


def _reply(result: Any, started: float, reason: str) -> RestReply:
    body = orjson.dumps({"result": result, "status": "ok", "time": time.perf_counter() - started})
    return RestReply(200, (("content-type", "application/json"), (SPLIT_HEADER, reason)), body)


def _refuse(reason: str) -> BadRequest:
    return BadRequest(reason)


class SplitReader:
    """Stateless: every call gets the layout, the targets' distance and the sender."""

    async def rest(self, call: RestCall, rest: str, layout: SplitLayout, distance: str,
                   send: Send) -> RestReply:
        started = time.perf_counter()
        body = orjson.loads(call.body) if call.body.strip() else {}
        if not isinstance(body, dict):
            raise _refuse("split: the request body must be a JSON object")
        if call.method == "GET" or rest == "/points":
            return await self._retrieve(call, rest, body, layout, send, started)
        if rest in _BATCH:
            return await self._batch(call, rest, body, layout, distance, send, started)
        route = sr.targets_for(layout, body.get("filter"))
        if (why := sr.check_fanout(layout, route)) is not None:
            raise _refuse(why)
        if route.single:
            name = route.collections[0]
            reply = await send(name, call.with_path(rest_path(name, rest)))
            return RestReply(reply.status, (*reply.headers, (SPLIT_HEADER, route.reason)), reply.body)
        if not route.collections:
            return _reply(_empty(rest, body), started, route.reason)
        if rest in _SCORED:
            return await self._scored(call, rest, body, route, distance, send, started)
        if rest == "/points/scroll" and body.get("order_by") is None:
            return await self._scroll(call, body, route, send, started)
        if rest == "/points/count":
            answers = await _all(send, call, route.collections, rest, body)
            if isinstance(answers, RestReply):
                return answers
            return _reply({"count": sr.merge_count([a["count"] for a in answers])}, started, route.reason)
        raise _refuse(f"split: {rest} cannot be merged across {len(route.collections)} targets; "
                      f"pin {', '.join(layout.fields)} with must/match in the filter to route it to one")

    async def _scored(self, call: RestCall, rest: str, body: dict[str, Any], route: sr.ReadRoute,
                      distance: str, send: Send, started: float) -> RestReply:
        if body.get("group_by") is not None:
            raise _refuse("split: grouped queries cannot be merged across targets; pin the split field")
        limit, offset = int(body.get("limit") or 10), int(body.get("offset") or 0)
        side = {**body, "limit": sr.fanout_limit(limit, offset), "offset": 0}
        answers = await _all(send, call, route.collections, rest, side)
        if isinstance(answers, RestReply):
            return answers
        key = _SCORED[rest]
        hits = [a if key == "list" else a["points"] for a in answers]
        merged = sr.merge_scored(hits, limit, offset, distance)
        return _reply(merged if key == "list" else {"points": merged}, started, route.reason)

    async def _scroll(self, call: RestCall, body: dict[str, Any], route: sr.ReadRoute,
                      send: Send, started: float) -> RestReply:
        limit = int(body.get("limit") or 10)
        answers = await _all(send, call, route.collections, "/points/scroll", {**body, "limit": limit + 1})
        if isinstance(answers, RestReply):
            return answers
        page, nxt = sr.merge_scroll([a["points"] for a in answers], limit)
        return _reply({"points": page, "next_page_offset": nxt}, started, route.reason)

    async def _retrieve(self, call: RestCall, rest: str, body: dict[str, Any], layout: SplitLayout,
                        send: Send, started: float) -> RestReply:
        names = layout.collections
        if call.method == "GET":
            raw_id = unquote(rest.rsplit("/", 1)[1])
            replies = await asyncio.gather(*(send(n, call.with_path(rest_path(n, rest))) for n in names))
            for r in replies:
                if r.ok:
                    return RestReply(r.status, (*r.headers, (SPLIT_HEADER, "split: retrieved from all targets")), r.body)
            return next((r for r in replies if r.status != 404), replies[0]) if raw_id else replies[0]
        answers = await _all(send, call, names, "/points", body)
        if isinstance(answers, RestReply):
            return answers
        return _reply(sr.merge_retrieve(body.get("ids") or [], answers), started, "split: retrieved from all targets")

    async def _batch(self, call: RestCall, rest: str, body: dict[str, Any], layout: SplitLayout,
                     distance: str, send: Send, started: float) -> RestReply:
        subs = body.get("searches")
        if not isinstance(subs, list):
            raise _refuse("split: a batch needs `searches`")
        unit = _BATCH[rest]
        names = sorted({n for s in subs for n in sr.targets_for(layout, (s or {}).get("filter")).collections})
        if len(names) > sr.MAX_FANOUT:
            raise _refuse(f"split: this batch would fan out to {len(names)} targets (at most {sr.MAX_FANOUT})")
        if any((s or {}).get("group_by") is not None for s in subs):
            raise _refuse("split: grouped queries cannot be merged across targets; pin the split field")
        sides = [{**s, "limit": sr.fanout_limit(int(s.get("limit") or 10), int(s.get("offset") or 0)), "offset": 0}
                 for s in subs]
        answers = await _all(send, call, tuple(names), rest, {**body, "searches": sides})
        if isinstance(answers, RestReply):
            return answers
        out = []
        for i, s in enumerate(subs):
            per = [a[i] if unit == "/points/search" else a[i]["points"] for a in answers]
            merged = sr.merge_scored(per, int(s.get("limit") or 10), int(s.get("offset") or 0), distance)
            out.append(merged if unit == "/points/search" else {"points": merged})
        return _reply(out, started, f"split: batch over {len(names)} targets")


async def _all(send: Send, call: RestCall, names: Sequence[str], rest: str,
               body: Mapping[str, Any]) -> list[Any] | RestReply:
    """Every target's ``result`` (in ``names`` order), or the first error reply as it came."""
    raw = orjson.dumps(body)
    replies = await asyncio.gather(*(send(n, RestCall(call.method, rest_path(n, rest), call.query, call.headers,
                                                      raw, call.peer)) for n in names))
    for r in replies:
        if not r.ok:
            return r
    return [orjson.loads(r.body)["result"] for r in replies]


def retarget_inference(body: Any, names: Sequence[str], model: str) -> Any:
    """``body`` with every inference object (``{"text", "model"}``) naming one of ``names`` (the
    source's model id and name) renamed to the target's ``model``, so the proxy embeds the query
    text with the model each target is on (other models are left for Qdrant, as sent)."""
    if isinstance(body, dict):
        out = {k: retarget_inference(v, names, model) for k, v in body.items()}
        if isinstance(out.get("text"), str) and out.get("model") in names:
            out["model"] = model
        return out
    if isinstance(body, list):
        return [retarget_inference(v, names, model) for v in body]
    return body


def _empty(rest: str, body: Mapping[str, Any]) -> Any:
    """The answer of a read no target can satisfy (its filter excludes every split value)."""
    if rest == "/points/count":
        return {"count": 0}
    if rest == "/points/scroll":
        return {"points": [], "next_page_offset": None}
    if rest == "/points/search":
        return []
    if rest == "/points/query":
        return {"points": []}
    raise _refuse(f"split: {rest} with a filter no target matches")


# -- the executor's entry points ---------------------------------------------------------------

_READ_PHASES = ("reads_switched", "writes_switched", "complete")
_WRITE_PHASES = ("dual_write", "verified", "reads_switched", "writes_switched", "complete")


def governing_split(snap: Any, name: str, phases: Sequence[str]) -> Any:
    """The split migration governing ``name`` when it is in one of ``phases`` (pure), else ``None``."""
    from switchyard.proxy.migration.routing import governing

    m = governing(snap.migrations.values(), name) if snap.migrations else None
    return m if m is not None and m.kind == "split" and m.phase in phases else None


def read_migration(snap: Any, name: str) -> Any:
    """A split migration whose reads are switched to the targets on ``name``."""
    return governing_split(snap, name, _READ_PHASES)


def write_migration(snap: Any, name: str) -> Any:
    """A split migration whose writes on ``name`` are levelled into the targets."""
    return governing_split(snap, name, _WRITE_PHASES)


async def rest_read(reader: Any, call: RestCall, rest: str, m: Any, snap: Any, forward: Any) -> RestReply:
    """A point read on split migration ``m``'s logical name, answered from its targets: each
    target's call has its inference objects naming model A renamed to the target's model and is
    sent through ``reader.resolve_inference_rest`` (the proxy embeds the query text)."""
    from switchyard.proxy.dataplane.split_mirror import layout_of, specs_by_target

    spec_a = snap.models.get(m.model_a)
    names = tuple(n for n in (m.model_a, getattr(spec_a, "model", None)) if n)
    models = specs_by_target(m)
    distance = str(getattr(spec_a, "distance", "Cosine"))

    async def send(name: str, c: RestCall) -> RestReply:
        model = models.get(name)
        if model and names and c.body.strip():
            c = c.with_body(orjson.dumps(retarget_inference(orjson.loads(c.body), names, model)))
        return await reader.resolve_inference_rest(c, name, snap, forward)  # type: ignore[no-any-return]

    return await SplitReader().rest(call, rest, layout_of(m), distance, send)
