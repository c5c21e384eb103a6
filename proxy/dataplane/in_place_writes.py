"""Upserts of a ``named-vector`` (in place) migration: B's vector added in the same upsert.

The executor hands every point write to a collection whose in-place migration is in a write
phase (``in_place_reads.write_config``) to :func:`rest_body` / :func:`grpc_request`: the pure
plan (``in_place.plan_rest_write`` / ``plan_grpc_points``) says which vectors to compute, the
texts are bounded and embedded here (one call per model), and the request to forward comes
back with them. A write the plan refuses raises :class:`BadRequest` (400 / INVALID_ARGUMENT)
with the plan's reason and is never forwarded: a point without B's vector would be a point
the migration silently missed. A failing embedder fails the write the same way (its own
error), for the same reason. Writes without points (deletes, payload and vector updates) come
back unchanged (``None``): in place there is nothing to mirror.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import orjson
from qdrant_client.grpc import points_pb2

from switchyard.proxy.intercept.json_scan import parse_exact
from switchyard.proxy.dataplane.in_place import InPlace, WritePlan, plan_grpc_points, plan_rest_write
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.intercept.inference import Embeds, check_bounds
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.state.snapshot import StateSnapshot

log = logging.getLogger("switchyard.in_place")


async def _embed(plan: WritePlan, m: Migration, snap: StateSnapshot, pool: Embeds | None) -> None:
    if plan.refusals:
        log.warning("refused in-place write on %s: %s", m.source, plan.reason())
        raise BadRequest(f"in-place migration {m.id}: {plan.reason()}")
    if pool is None and plan.fills:
        raise BadRequest(f"in-place migration {m.id}: this proxy has no embedder pool to compute "
                         "model B's vectors; nothing was written")
    for role, model_id in (("new", m.model_b), ("old", m.model_a)):
        fills = [f for f in plan.fills if f.role == role]
        if not fills:
            continue
        spec = snap.models.get(model_id)
        if spec is None:
            raise BadRequest(f"in-place migration {m.id}: model {model_id} is not registered; "
                             "nothing was written")
        assert pool is not None
        check_bounds(((len(f.text), spec) for f in fills), pool.limits)
        texts = sorted({f.text for f in fills})
        vectors = np.asarray(await pool.embed(spec, texts), dtype=np.float32).tolist()
        by_text = dict(zip(texts, vectors))
        for fill in fills:
            fill.put(by_text[fill.text])


async def rest_body(rest: str, body: bytes, cfg: InPlace, m: Migration, snap: StateSnapshot,
                    pool: Embeds | None) -> bytes | None:
    """The body to forward instead of ``body`` (``None``: forward it as it is)."""
    if rest not in ("/points", "/points/batch"):
        return None
    parsed = parse_exact(body)
    plan, result = plan_rest_write(rest, parsed, cfg)
    if not plan.fills and not plan.refusals and not plan.client_sent:
        return None
    await _embed(plan, m, snap, pool)
    try:
        return orjson.dumps(result())
    except TypeError:  # an integer beyond 64 bits: Qdrant answers it, not the proxy
        return json.dumps(result()).encode()


async def grpc_request(method: str, raw: bytes, cfg: InPlace, m: Migration, snap: StateSnapshot,
                       pool: Embeds | None) -> bytes | None:
    """The request to forward instead of ``raw`` (``None``: forward it as it is)."""
    name = method.rsplit("/", 1)[-1]
    if name == "Upsert":
        msg: Any = points_pb2.UpsertPoints()
    elif name == "UpdateBatch":
        msg = points_pb2.UpdateBatchPoints()
    else:
        return None
    try:
        msg.ParseFromString(raw)
    except Exception:  # noqa: BLE001 - bytes that do not parse get Qdrant's own error
        return None
    plan = WritePlan()
    if name == "Upsert":
        plan_grpc_points(msg.points, cfg, plan)
    else:
        for op in msg.operations:
            if op.WhichOneof("operation") == "upsert":
                plan_grpc_points(op.upsert.points, cfg, plan)
    if not plan.fills and not plan.refusals and not plan.client_sent:
        return None
    await _embed(plan, m, snap, pool)
    return bytes(msg.SerializeToString())

