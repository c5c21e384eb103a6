"""Replies that list every collection, rewritten without ``_switchyard``; the gate applying it.

Only the few replies :class:`switchyard.proxy.intercept.reserved.Listing` names are decoded, and each is
small: the collection and alias lists (REST JSON, gRPC ``ListCollectionsResponse`` /
``ListAliasesResponse``), Qdrant's Prometheus text at ``/metrics`` and its JSON ``/telemetry``.
Through the proxy each then reads as if ``_switchyard`` did not exist: it is missing from the
lists, ``collections_total`` and ``number_of_collections`` are one lower, and series labelled
``collection="_switchyard"`` and per-collection telemetry entries with its id are dropped. A
reply that does not parse, or an error reply, is returned unchanged (the client sees what the
upstream said). ``present`` says whether ``_switchyard`` exists (the proxy read it at its last
refresh), so counts are only lowered when it is really counted. The filters are pure;
:class:`ReservedGate` is the thin part the executor calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from qdrant_client.grpc import collections_pb2

from switchyard.proxy.errors import Forbidden
from switchyard.proxy.intercept import reserved
from switchyard.proxy.intercept.reserved import RESERVED, Listing
from switchyard.proxy.state.snapshot import StateSnapshot
from switchyard.proxy.wire import GrpcCall, GrpcForward, GrpcReply, RestCall, RestForward, RestReply

_COUNTS = re.compile(rb"^(collections_total(?:\{[^}]*\})?) (\d+(?:\.\d+)?)$")
_LABEL = f'collection="{RESERVED}"'.encode()


def rest_body(listing: Listing, body: bytes, present: bool) -> bytes:
    """The REST reply body for ``listing`` without ``_switchyard``."""
    if listing is Listing.METRICS:
        return metrics_text(body, present)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(data, dict) or not isinstance(data.get("result"), dict):
        return body
    result = data["result"]
    if listing is Listing.COLLECTIONS:
        changed = _drop(result, "collections", lambda c: c.get("name") == RESERVED)
    elif listing is Listing.ALIASES:
        changed = _drop(result, "aliases", lambda a: a.get("collection_name") == RESERVED)
    else:
        changed = _telemetry(result, present)
    return orjson.dumps(data) if changed else body


def _drop(container: dict[str, Any], key: str, hidden: Any) -> bool:
    items = container.get(key)
    if not isinstance(items, list):
        return False
    kept = [i for i in items if not (isinstance(i, dict) and hidden(i))]
    container[key] = kept
    return len(kept) != len(items)


def _telemetry(result: dict[str, Any], present: bool) -> bool:
    """``result.collections``: ``number_of_collections`` and the per-collection entries."""
    cols = result.get("collections")
    if not isinstance(cols, dict):
        return False
    changed = _drop(cols, "collections", lambda c: c.get("id") == RESERVED)
    count = cols.get("number_of_collections")
    if (present or changed) and isinstance(count, int) and not isinstance(count, bool) and count > 0:
        cols["number_of_collections"] = count - 1
        changed = True
    return changed


def metrics_text(body: bytes, present: bool) -> bytes:
    """Prometheus text: ``collections_total`` one lower, ``_switchyard``'s own series dropped."""
    out: list[bytes] = []
    for line in body.split(b"\n"):
        if _LABEL in line and not line.startswith(b"#"):
            continue
        m = _COUNTS.match(line)
        if m is not None and present:
            value = float(m[2])
            if value >= 1:
                number = value - 1
                text = str(int(number)) if number == int(number) else repr(number)
                line = m[1] + b" " + text.encode()
        out.append(line)
    return b"\n".join(out)


def grpc_response(listing: Listing, response: bytes) -> bytes:
    """A gRPC ``List`` / ``ListAliases`` reply without ``_switchyard``."""
    message: Any
    if listing is Listing.COLLECTIONS:
        message = collections_pb2.ListCollectionsResponse()
    else:
        message = collections_pb2.ListAliasesResponse()
    try:
        message.ParseFromString(response)
    except DecodeError:
        return response
    if listing is Listing.COLLECTIONS:
        kept = [c for c in message.collections if c.name != RESERVED]
        if len(kept) == len(message.collections):
            return response
        del message.collections[:]
        message.collections.extend(kept)
    else:
        kept_aliases = [a for a in message.aliases if a.collection_name != RESERVED]
        if len(kept_aliases) == len(message.aliases):
            return response
        del message.aliases[:]
        message.aliases.extend(kept_aliases)
    return bytes(message.SerializeToString())


class ReservedGate:
    """Applies :mod:`switchyard.proxy.intercept.reserved` and the filters above to intercepted calls.

    The executor asks :meth:`rest_wants` / :meth:`grpc_wants` (cheap, on every call), then
    :meth:`rest` / :meth:`grpc` first: they answer a call that touches ``_switchyard`` (a
    403 via :class:`~switchyard.proxy.errors.Forbidden`, or the upstream's listing without it) and return
    ``None`` for every other call, which the executor handles as before."""

    def __init__(self, admin_key: str | None, trust_loopback: bool = True) -> None:
        self.admin_key = admin_key
        self.trust_loopback = trust_loopback

    def rest_wants(self, method: str, path: str, aliases: Mapping[str, str]) -> bool:
        return reserved.rest_wants(method, path, aliases)

    async def rest(self, call: RestCall, forward: RestForward, snap: StateSnapshot) -> RestReply | None:
        why = reserved.rest_refusal(call.method, call.path, call.body, snap.aliases)
        listing = reserved.rest_listing(call.method, call.path)
        if why is None and listing is None:
            return None
        if reserved.admitted(call.headers, self.admin_key, call.peer,
                             trust_loopback=self.trust_loopback):  # Switchyard's own tools see it all
            return await forward(replace(call, headers=reserved.without_credential(call.headers)))
        if why is not None:
            raise Forbidden(why)
        assert listing is not None
        reply = await forward(call)
        if not reply.ok:
            return reply
        return replace(reply, body=rest_body(listing, reply.body, snap.taken_at > 0))

    def grpc_wants(self, method: str) -> bool:
        return reserved.grpc_wants(method)

    async def grpc(self, call: GrpcCall, forward: GrpcForward, snap: StateSnapshot) -> GrpcReply | None:
        why = reserved.grpc_refusal(call.method, call.request, snap.aliases)
        listing = reserved.grpc_listing(call.method)
        if why is None and listing is None:
            return None
        if reserved.admitted(call.metadata, self.admin_key, call.peer, trust_loopback=self.trust_loopback):
            return await forward(replace(call, metadata=reserved.without_credential(call.metadata)))
        if why is not None:
            raise Forbidden(why)
        assert listing is not None
        reply = await forward(call)
        if not reply.ok or reply.response is None:
            return reply
        return replace(reply, response=grpc_response(listing, reply.response))
