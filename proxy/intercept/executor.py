"""The executor: runs plans for intercepted point writes, for both protocols.

This is the :class:`proxy.wire.Interceptor` the front ends consult. It stays thin: route the
call, decode with the protocol's codec, ``plan()`` against the cached state snapshot, then
forward (rewritten when the plan stamps metadata) or refuse with a Qdrant-shaped 400 /
INVALID_ARGUMENT. The client always receives the upstream's own reply to the forwarded call.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol
from urllib.parse import unquote

from proxy.errors import EnforcementError
from proxy.intercept import grpc_codec, rest_codec
from proxy.intercept.metrics import (
    ENFORCE_REJECTIONS,
    FOREIGN_METADATA,
    POINTS_STAMPED,
    UNDECODABLE,
)
from proxy.intercept.operation import OpKind
from proxy.intercept.planner import Action, Plan, plan
from proxy.state.snapshot import StateSnapshot
from proxy.wire import GrpcCall, GrpcForward, GrpcReply, RestCall, RestForward, RestReply

log = logging.getLogger("switchyard.intercept")

_POINTS_PATH = re.compile(r"^/collections/(?P<c>[^/]+)/points(?P<batch>/batch)?/?$")


def rest_route(method: str, path: str) -> tuple[OpKind, str] | None:
    """Which point write a REST call is, if any: pure, runs on every request."""
    m = _POINTS_PATH.match(path)
    if m is None:
        return None
    if m["batch"]:
        return (OpKind.BATCH, unquote(m["c"])) if method == "POST" else None
    return (OpKind.UPSERT, unquote(m["c"])) if method == "PUT" else None


class SnapshotSource(Protocol):
    """Anything holding a current :class:`StateSnapshot` (the proxy's ``StateCache``)."""

    snapshot: StateSnapshot


class PointWriteInterceptor:
    """Stamps or enforces embedding metadata on point writes to bound collections."""

    def __init__(self, state: SnapshotSource) -> None:
        self._state = state

    def rest_wants(self, method: str, path: str) -> bool:
        route = rest_route(method, path)
        return route is not None and self._state.snapshot.is_bound(route[1])

    async def rest(self, call: RestCall, forward: RestForward) -> RestReply:
        route = rest_route(call.method, call.path)
        if route is None:
            return await forward(call)
        decoded = rest_codec.decode(route[0], route[1], call.body)
        if decoded is None:
            UNDECODABLE.labels("rest").inc()
            return await forward(call)
        op, message = decoded
        verdict = self._decide(plan(op, self._state.snapshot), len(op.points))
        if verdict.action is Action.STAMP:
            rest_codec.stamp(message, verdict.stamp)
            return await forward(call.with_body(message.encode()))
        return await forward(call)

    def grpc_wants(self, method: str) -> bool:
        return method in grpc_codec.METHODS

    async def grpc(self, call: GrpcCall, forward: GrpcForward) -> GrpcReply:
        decoded = grpc_codec.decode(call.method, call.request)
        if decoded is None:
            UNDECODABLE.labels("grpc").inc()
            return await forward(call)
        op, message = decoded
        if not self._state.snapshot.is_bound(op.collection):
            return await forward(call)
        verdict = self._decide(plan(op, self._state.snapshot), len(op.points))
        if verdict.action is Action.STAMP:
            grpc_codec.stamp(message, verdict.stamp)
            return await forward(call.with_request(message.encode()))
        return await forward(call)

    @staticmethod
    def _decide(verdict: Plan, n_points: int) -> Plan:
        """Count and log the plan; raise for a refusal so the front end answers 400."""
        if verdict.action is Action.REJECT:
            ENFORCE_REJECTIONS.labels(verdict.collection, verdict.model_id).inc()
            log.warning("refused write: %s", verdict.reason)
            raise EnforcementError(verdict.reason)
        if verdict.action is Action.STAMP:
            POINTS_STAMPED.labels(verdict.collection, verdict.model_id).inc(n_points)
            if verdict.foreign:
                FOREIGN_METADATA.labels(verdict.collection, verdict.model_id).inc(
                    len(verdict.foreign)
                )
                log.warning(
                    "collection=%s model=%s: %d point(s) carry metadata of another model "
                    "(first ids: %s); kept as the client sent them",
                    verdict.collection, verdict.model_id, len(verdict.foreign),
                    ", ".join(verdict.foreign[:5]),
                )
        return verdict
