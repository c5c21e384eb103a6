"""``_switchyard`` is the proxy's own: which data-plane calls touch it, and who may make them.

The state store lives in the upstream's collection ``_switchyard`` (``switchyard.proxy.state.store``). It
holds operator state (model specs, bindings, migrations, heartbeats, repair records), so through
the proxy's data plane it is neither shown nor reachable by applications:

* **listings hide it**: REST ``GET /collections``, ``GET /aliases``, ``/metrics``, ``/telemetry``
  and gRPC ``Collections/List`` / ``ListAliases`` are answered without it
  (``switchyard.proxy.intercept.listing`` rewrites those few small replies; nothing else is decoded);
* **every call that addresses it is refused** with 403 / ``PERMISSION_DENIED`` and the reason:
  point writes *and reads*, collection create / update / delete / exists / info, index changes,
  snapshots, cluster and shard-key calls, and alias changes that point at it (create onto it,
  or rename / delete an alias that points at it). Reads are refused too because the records
  are the operator's, not the application's; a call through an alias of ``_switchyard`` is the
  same call.

The way in is Switchyard's own: the admin API, the proxy's own state-store client (which talks
to the upstream directly, never through a proxy), and Switchyard's tools, which send the admin
credential in header ``switchyard-admin-key`` (:func:`admitted`). With an admin key configured
that header must carry it; with none configured the header is the opt-in, and only a loopback
peer may opt in (the admin API's own rule, ``docs/security.md``). The header is removed before
the call goes upstream.

Everything here is pure: names, paths, bytes and the snapshot's alias map in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from urllib.parse import unquote

import orjson
from google.protobuf.message import DecodeError
from qdrant_client.grpc import collections_pb2

from switchyard.proxy.admin.access import admin_verdict
from switchyard.proxy.intercept.routes import grpc_collection
from switchyard.proxy.state.store import STATE_COLLECTION
from switchyard.proxy.wire import Headers

RESERVED = STATE_COLLECTION
ADMIN_HEADER = "switchyard-admin-key"
_PREFIX = "/collections/"
_SERVICES = ("/qdrant.Collections/", "/qdrant.Points/", "/qdrant.Snapshots/")
#: Methods of those services whose request has no collection name in field 1.
_NO_COLLECTION = frozenset({
    "/qdrant.Collections/List", "/qdrant.Collections/ListAliases",
    "/qdrant.Collections/UpdateAliases", "/qdrant.Snapshots/CreateFull",
    "/qdrant.Snapshots/ListFull", "/qdrant.Snapshots/DeleteFull",
})


class Listing(Enum):
    """A reply that mentions every collection, so ``_switchyard`` is filtered out of it."""

    COLLECTIONS = "collections"
    ALIASES = "aliases"
    METRICS = "metrics"
    TELEMETRY = "telemetry"


_REST_LISTINGS = {
    ("GET", "/collections"): Listing.COLLECTIONS,
    ("GET", "/aliases"): Listing.ALIASES,
    ("GET", "/metrics"): Listing.METRICS,
    ("GET", "/telemetry"): Listing.TELEMETRY,
}
_GRPC_LISTINGS = {
    "/qdrant.Collections/List": Listing.COLLECTIONS,
    "/qdrant.Collections/ListAliases": Listing.ALIASES,
}
_ALIAS_CHANGES_REST = ("POST", "/collections/aliases")
_ALIAS_CHANGES_GRPC = "/qdrant.Collections/UpdateAliases"


def is_reserved(name: str | None, aliases: Mapping[str, str]) -> bool:
    """``name`` is ``_switchyard`` itself or an alias of it (per the snapshot's alias map)."""
    return name is not None and (name == RESERVED or aliases.get(name) == RESERVED)


def refusal(name: str) -> str:
    """The 403 message for a call on ``name``."""
    through = "" if name == RESERVED else f" (alias {name})"
    return (f"collection `{RESERVED}`{through} holds Switchyard's own state and is not reachable "
            "through the data plane; use the admin API (/switchyard/v1) or `switchyard` commands")


# ---------------------------------------------------------------- REST

def rest_collection(path: str) -> str | None:
    """The collection segment of ``/collections/{name}[/...]`` (decoded), else ``None``."""
    if not path.startswith(_PREFIX):
        return None
    segment = path[len(_PREFIX):].split("/", 1)[0]
    return unquote(segment) if segment else None


def rest_listing(method: str, path: str) -> Listing | None:
    return _REST_LISTINGS.get((method, path.rstrip("/") or "/"))


def rest_wants(method: str, path: str, aliases: Mapping[str, str]) -> bool:
    """Cheap: does this REST call need the reserved-collection rules (a refusal or a filter)?"""
    if rest_listing(method, path) is not None or (method, path.rstrip("/")) == _ALIAS_CHANGES_REST:
        return True
    return is_reserved(rest_collection(path), aliases)


def rest_refusal(method: str, path: str, body: bytes, aliases: Mapping[str, str]) -> str | None:
    """Why this REST call may not go through (``None``: it may)."""
    if (method, path.rstrip("/")) == _ALIAS_CHANGES_REST:
        return _alias_actions_refusal(_json_actions(body), aliases)
    name = rest_collection(path)
    if name is not None and name != "aliases" and is_reserved(name, aliases):
        return refusal(name)
    return None


def _json_actions(body: bytes) -> list[dict[str, dict[str, str]]]:
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return []  # the upstream answers the malformed body itself
    actions = data.get("actions") if isinstance(data, dict) else None
    return [a for a in actions if isinstance(a, dict)] if isinstance(actions, list) else []


def _alias_actions_refusal(actions: list[dict[str, dict[str, str]]],
                           aliases: Mapping[str, str]) -> str | None:
    """An alias change touching ``_switchyard``: created onto it, or an alias of it renamed,
    re-pointed or deleted. Actions are ``{"create_alias": {...}}``-shaped (REST and gRPC alike)."""
    for action in actions:
        for kind, args in action.items():
            if not isinstance(args, dict):
                continue
            if kind == "create_alias" and is_reserved(args.get("collection_name"), aliases):
                return refusal(RESERVED)
            for key in ("alias_name", "old_alias_name"):
                if is_reserved(args.get(key), aliases) and args.get(key) != RESERVED:
                    return refusal(str(args.get(key)))
    return None


# ---------------------------------------------------------------- gRPC

def grpc_wants(method: str) -> bool:
    """Does this gRPC method need the rules? Every method of the three collection services."""
    return method.startswith(_SERVICES)


def grpc_listing(method: str) -> Listing | None:
    return _GRPC_LISTINGS.get(method)


def grpc_refusal(method: str, request: bytes, aliases: Mapping[str, str]) -> str | None:
    """Why this gRPC call may not go through (``None``: it may); reads only field 1 or, for
    alias changes, the small ``ChangeAliases`` message."""
    if method == _ALIAS_CHANGES_GRPC:
        return _alias_actions_refusal(_grpc_actions(request), aliases)
    if method in _NO_COLLECTION or not method.startswith(_SERVICES):
        return None
    name = grpc_collection(request)
    return refusal(name) if name is not None and is_reserved(name, aliases) else None


def _grpc_actions(request: bytes) -> list[dict[str, dict[str, str]]]:
    message = collections_pb2.ChangeAliases()
    try:
        message.ParseFromString(request)
    except DecodeError:
        return []  # the upstream answers the malformed message itself
    out: list[dict[str, dict[str, str]]] = []
    for op in message.actions:
        kind = op.WhichOneof("action")
        if kind is not None:
            args = getattr(op, kind)
            out.append({kind: {f.name: str(v) for f, v in args.ListFields()}})
    return out


# ---------------------------------------------------------------- who may

def admitted(headers: Headers, admin_key: str | None, peer: str | None = None, *,
             trust_loopback: bool = True) -> bool:
    """Does this call carry Switchyard's own credential, by the admin API's own rule
    (:func:`switchyard.proxy.admin.access.admin_verdict`)? With an admin key configured the header must
    carry it; with none, the header is the opt-in and only a loopback peer may opt in, exactly
    as only a loopback peer may use the admin API then."""
    for name, value in headers:
        if name == ADMIN_HEADER:
            return admin_verdict(peer, admin_key, value, trust_loopback=trust_loopback).allowed
    return False


def without_credential(headers: Headers) -> Headers:
    """``headers`` without ``switchyard-admin-key``: the upstream never sees it."""
    return tuple((k, v) for k, v in headers if k != ADMIN_HEADER)
