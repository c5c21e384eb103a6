"""Mirrored writes of a ``split`` migration: admission before the primary, levelling after it.

Hooks into the shared :class:`~switchyard.proxy.dataplane.mirror.Mirror` (whose intents,
write order, repair log and settle rules apply unchanged) at two points:

* :func:`admission_rest` / :func:`admission_grpc` (the executor, before the primary): the
  reason to refuse a write that would leave a point without a target (``split_routing``), as
  a 400 / ``INVALID_ARGUMENT`` naming the point and the field. Nothing reaches the source.
* :func:`sync` (the mirror's secondary leg): re-read the touched ids on the source (with
  vectors: copied targets take them, re-embedded targets embed the text with their own model),
  :func:`~switchyard.proxy.dataplane.split_routing.level` them, and apply each target's leg
  (upserts with that target's model and metadata, deletes); an id that exists on the source
  without a routable key is put in the repair log with the reason, so verify refuses until it
  is fixed. Returns the ids that could not be embedded (no text), as the shared leg does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from qdrant_client.conversions.conversion import GrpcToRest
from qdrant_client.grpc import points_pb2

from switchyard.proxy.dataplane.split_routing import SplitLayout, admit_rest_batch, admit_rest_write, level
from switchyard.proxy.intercept.routes import rest_path
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.wire import RestCall

if TYPE_CHECKING:
    from switchyard.proxy.dataplane.mirror import Mirror, MirrorTarget, Prepared
    from switchyard.proxy.migration.record import Migration

_REST_KINDS = {
    ("PUT", "/points"): "upsert", ("PUT", "/points/payload"): "overwrite_payload",
    ("POST", "/points/payload"): "set_payload", ("POST", "/points/payload/delete"): "delete_payload",
    ("POST", "/points/payload/clear"): "clear_payload",
}


def is_split(m: Migration) -> bool:
    return m.kind == "split"


def layout_of(m: Migration) -> SplitLayout:
    from switchyard.proxy.migration.kinds.split import split_layout

    return split_layout(m)


def closed_reason(snap: Any, name: str) -> str | None:
    """Why a write to ``name`` is refused because the split migration governing it was cleaned
    up (pure; ``None``: not closed). Until ``cleanup`` the source is the write primary and every
    write is levelled into the targets; after it the source is gone, so a write through the
    logical name has nowhere exact to go (an edit by id could belong to any target) and the
    proxy fails closed, naming the targets the client should write to."""
    from switchyard.proxy.dataplane.split_exec import governing_split

    m = governing_split(snap, name, ("complete",))
    if m is None or not any(e.action == "cleanup" for e in m.history):
        return None
    names = ", ".join(f"`{n}`" for n in layout_of(m).collections)
    return (f"writes to `{name}` are closed: split migration {m.id} was cleaned up and its source "
            f"`{m.source}` is gone; write to the split targets directly ({names}); reads of `{name}` "
            "still fan out to them")


def admission_rest(m: Migration, method: str, rest: str, body: Any) -> str | None:
    """Why a REST write to a split migration's source is refused (``None``: admit)."""
    layout = layout_of(m)
    if (method, rest) == ("POST", "/points/batch"):
        ops = body.get("operations") if isinstance(body, dict) else None
        return admit_rest_batch(layout, ops) if isinstance(ops, list) else None
    kind = _REST_KINDS.get((method, rest))
    return admit_rest_write(layout, kind, body) if kind else None


def admission_grpc(m: Migration, method_name: str, raw: bytes) -> str | None:
    """The gRPC form of :func:`admission_rest` (the request decoded to its REST shape)."""
    layout = layout_of(m)
    try:
        ops = _grpc_ops(method_name, raw)
    except Exception:  # noqa: BLE001 - undecodable: the upstream refuses it, the mirror records it
        return None
    return admit_rest_batch(layout, ops)


def _grpc_ops(method_name: str, raw: bytes) -> list[dict[str, Any]]:
    if method_name == "Upsert":
        msg = points_pb2.UpsertPoints.FromString(raw)
        return [{"upsert": _upsert(msg.points)}]
    if method_name == "SetPayload":
        set_msg = points_pb2.SetPayloadPoints.FromString(raw)
        op: dict[str, Any] = {"payload": GrpcToRest.convert_payload(set_msg.payload)}
        if set_msg.HasField("key"):
            op["key"] = set_msg.key
        return [{"set_payload": op}]
    if method_name == "OverwritePayload":
        ow = points_pb2.SetPayloadPoints.FromString(raw)
        return [{"overwrite_payload": {"payload": GrpcToRest.convert_payload(ow.payload)}}]
    if method_name == "DeletePayload":
        dp = points_pb2.DeletePayloadPoints.FromString(raw)
        return [{"delete_payload": {"keys": list(dp.keys)}}]
    if method_name == "ClearPayload":
        return [{"clear_payload": {}}]
    if method_name == "UpdateBatch":
        batch = points_pb2.UpdateBatchPoints.FromString(raw)
        return [_batch_op(op) for op in batch.operations]
    return []


def _upsert(points: Any) -> dict[str, Any]:
    return {"points": [{"id": _pid(p.id), "payload": GrpcToRest.convert_payload(p.payload)} for p in points]}


def _pid(point_id: Any) -> Any:
    return point_id.num if point_id.WhichOneof("point_id_options") == "num" else point_id.uuid


def _batch_op(op: Any) -> dict[str, Any]:
    which = op.WhichOneof("operation")
    inner = getattr(op, which)
    if which == "upsert":
        return {"upsert": _upsert(inner.points)}
    if which in ("set_payload", "overwrite_payload"):
        body: dict[str, Any] = {"payload": GrpcToRest.convert_payload(inner.payload)}
        if which == "set_payload" and inner.HasField("key"):
            body["key"] = inner.key
        return {which: body}
    if which == "delete_payload":
        return {"delete_payload": {"keys": list(inner.keys)}}
    if which in ("clear_payload", "clear_payload_deprecated"):
        return {"clear_payload": {}}
    return {which: {}}


def target_spec(m: Migration, name: str, default: ModelSpec) -> tuple[ModelSpec, bool]:
    """The model target ``name`` is on and whether its vectors are copied (pure)."""
    from switchyard.proxy.migration.kinds.split import derived_of

    for t in derived_of(m.options).get("targets") or ():
        if t["name"] == name and t.get("spec"):
            return ModelSpec.from_dict(t["spec"], strict=False), False
    return default, True


async def sync(mirror: Mirror, prep: Prepared) -> list[Any]:
    """The split form of the mirror's secondary leg (module docstring)."""
    from switchyard.proxy.dataplane.mirror import Prepared as _Prepared
    from switchyard.proxy.dataplane.mirror import _as_new
    from switchyard.proxy.dataplane.writes import point_key

    t = prep.target
    ids = prep.unique_ids()
    if not ids:
        return []
    found = await mirror._retrieve(t.primary, ids, prep.headers, True)
    now = {point_key(p["id"]): p for p in found}
    out = level(layout_of(t.migration), ids, now)
    missing: list[Any] = []
    for name, leg in out.legs.items():
        spec, copy = target_spec(t.migration, name, t.spec)
        sub_t = _sub_target(t, name, spec, copy)
        sub = _Prepared(sub_t, prep.intent, prep.headers, ids=list(ids))
        news = [_as_new(p, sub_t) for p in leg.upserts]
        points, lacking = await mirror._secondary_points(sub, news)
        missing += lacking
        if points:
            await mirror._call(RestCall("PUT", rest_path(name, "/points"), "wait=true", prep.headers,
                                        orjson.dumps({"points": points}, option=orjson.OPT_SERIALIZE_NUMPY)))
        if leg.deletes:
            await mirror._call(RestCall("POST", rest_path(name, "/points/delete"), "wait=true", prep.headers,
                                        orjson.dumps({"points": leg.deletes})))
    if out.unroutable:
        reasons = "; ".join(f"{pid}: {why}" for pid, why in sorted(out.unroutable.items())[:5])
        await mirror._record(prep, list(out.unroutable), [], f"split: no target for point(s) {reasons}",
                             clear=False)
    return missing


def _sub_target(t: MirrorTarget, name: str, spec: ModelSpec, copy: bool) -> MirrorTarget:
    m = dataclasses.replace(t.migration, copy_vectors=copy)
    return dataclasses.replace(t, migration=m, secondary=name, spec=spec, to_target=True)


def specs_by_target(m: Migration) -> Mapping[str, str | None]:
    """Target name -> model id (``None``: vectors copied), for status and tests."""
    from switchyard.proxy.migration.kinds.split import derived_of

    return {t["name"]: t.get("model") for t in derived_of(m.options).get("targets") or ()}
