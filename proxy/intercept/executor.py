"""The executor: routes point calls by migration phase and runs metadata plans, both protocols.

This is the :class:`switchyard.proxy.wire.Interceptor` the front ends consult. It stays thin:

1. routing: a point call on a logical name governed by a migration goes to the physical
   collection the phase dictates (``switchyard.proxy.migration.routing``): writes to the primary, reads to
   the read authority. The reply carries ``x-switchyard-route`` (REST header / gRPC initial
   metadata) saying where the call went and why;
2. metadata: an upsert, batch update or payload overwrite to a bound collection is decoded by
   the protocol's codec, ``plan()``-ed against the cached snapshot, and forwarded stamped (its
   inference objects embedded by the proxy), or refused with a Qdrant-shaped 400 /
   INVALID_ARGUMENT in enforce mode;
3. mirroring: while a migration has a secondary, a write is mirrored after the primary
   succeeded (``switchyard.proxy.dataplane.mirror``);
4. merged reads: similarity reads in read mode ``merged`` / ``shadow`` go to
   ``switchyard.proxy.dataplane.reads.MergedReader``; on other bound collections it serves their
   inference objects.

Which of these paths serves a call, on which collection, is decided once per call by the pure
:func:`~switchyard.proxy.intercept.dispatch.dispatch` (tested as a table); the methods here do
that path's I/O in the call's protocol. The client always receives the primary's own reply (or
the merged one). Calls that need none of this are never decoded.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Protocol

from switchyard.proxy.intercept.json_scan import parse_exact
from switchyard.proxy.errors import BadRequest, EnforcementError
from switchyard.proxy.intercept import grpc_codec, inference, rest_codec
from switchyard.proxy.intercept.credentials import CredentialGate
from switchyard.proxy.intercept.dispatch import CallPlan, Serve, dispatch, physical_collection
from switchyard.proxy.intercept.listing import ReservedGate
from switchyard.proxy.intercept.metrics import (
    ENFORCE_REJECTIONS,
    FOREIGN_METADATA,
    POINTS_STAMPED,
    UNDECODABLE,
)
from switchyard.proxy.intercept.operation import OpKind
from switchyard.proxy.intercept.planner import Action, Plan, plan
from switchyard.proxy.intercept.routes import (
    grpc_collection,
    grpc_kind,
    rename_grpc,
    rest_path,
    rest_target,
)
from switchyard.proxy.dataplane import in_place_writes, split_exec, split_exec_grpc, split_mirror
from switchyard.proxy.dataplane.mirror import Mirror, MirrorTarget
from switchyard.proxy.dataplane.writes import WriteIntent, grpc_intent, rest_intent, waited_query, waited_request
from switchyard.proxy.dataplane.query_codec import is_similarity_grpc, is_similarity_rest
from switchyard.proxy.dataplane.reads import MergedReader
from switchyard.proxy.state.freshness import StateGuard
from switchyard.proxy.state.snapshot import StateSnapshot
from switchyard.proxy.wire import GrpcCall, GrpcForward, GrpcReply, RestCall, RestForward, RestReply

log = logging.getLogger("switchyard.intercept")

ROUTE_HEADER = "x-switchyard-route"
_REST_METADATA_WRITES = {
    ("PUT", "/points"): OpKind.UPSERT,
    ("POST", "/points/batch"): OpKind.BATCH,
    ("PUT", "/points/payload"): OpKind.OVERWRITE,
}


class SnapshotSource(Protocol):
    """Anything holding a current :class:`StateSnapshot` (the proxy's ``StateCache``)."""

    snapshot: StateSnapshot


class Executor:
    """The interceptor both front ends consult: routes point calls by phase, stamps or enforces
    metadata, serves inference objects, mirrors writes and merges reads (module docstring)."""

    def __init__(self, state: SnapshotSource, mirror: Mirror | None = None,
                 pool: inference.Embeds | None = None, reader: MergedReader | None = None) -> None:
        self._state = state
        self.mirror = mirror
        self.reader = reader
        self.pool = pool  # serves inference objects of registered models (None: left alone)
        #: Fail closed on state (``switchyard.proxy.state.freshness``); ``None``: the snapshot is always trusted.
        self.state_guard: StateGuard | None = None
        #: ``_switchyard`` is the proxy's own (``switchyard.proxy.intercept.reserved``); ``None``: no rules.
        self.reserved: ReservedGate | None = None
        #: Checks the caller's credential before any work for it (``None``: no checks).
        self.credentials: CredentialGate | None = None

    # -- REST

    def rest_wants(self, method: str, path: str) -> bool:
        if self.reserved is not None and self.reserved.rest_wants(method, path, self._state.snapshot.aliases):
            return True
        found = rest_target(method, path)
        if found is None:
            return False
        collection, rest, kind = found
        snap = self._state.snapshot
        if snap.migrations and physical_collection(snap, collection, kind)[1] is not None:
            return True
        if not snap.is_bound(collection):
            return False
        return (method, rest) in _REST_METADATA_WRITES or (
            self.reader is not None and is_similarity_rest(method, rest))

    async def rest(self, call: RestCall, forward: RestForward) -> RestReply:
        if self.reserved is not None and (
                own := await self.reserved.rest(call, forward, self._state.snapshot)) is not None:
            return own
        found = rest_target(call.method, call.path)
        if found is None:
            return await forward(call)
        collection, rest, kind = found
        snap = self._state.snapshot
        similarity = kind == "read" and self.reader is not None and is_similarity_rest(call.method, rest)
        cp = dispatch(snap, collection, kind, similarity, self.reader is not None)
        if self.credentials is not None and cp.checked and (
                refused := await self.credentials.rest(call, cp.physical, kind, forward)) is not None:
            return refused  # the upstream's own 401 / 403: no work for this caller
        self._admit(cp, snap, collection, kind)
        if cp.serve is Serve.SPLIT_READ:
            assert self.reader is not None
            return await split_exec.rest_read(self.reader, call, rest, cp.split, snap, forward)  # split targets
        if (read := await self._rest_read(call, cp, snap, forward)) is not None:  # MERGED, IN_PLACE_READ
            return replace(read, headers=(*read.headers, (ROUTE_HEADER, cp.why or "")))
        if cp.physical != collection:
            call = call.with_path(rest_path(cp.physical, rest))
        if cp.serve is Serve.INFERENCE:
            assert self.reader is not None
            reply = await self.reader.resolve_inference_rest(call, cp.bound_as, snap, forward)
        elif cp.serve is Serve.WRITE:
            reply = await self._rest_write(call, rest, cp, snap, forward)
        else:
            reply = await forward(call)
        return reply if cp.why is None else replace(reply, headers=(*reply.headers, (ROUTE_HEADER, cp.why)))

    async def _rest_read(self, call: RestCall, cp: CallPlan, snap: StateSnapshot,
                         forward: RestForward) -> RestReply | None:
        """The reader's answer on the MERGED and IN_PLACE_READ paths; ``None`` on the others."""
        if self.reader is not None and cp.merging is not None:
            return await self.reader.rest(call, *cp.merging, snap, forward)
        if self.reader is not None and cp.in_place is not None:
            return await self.reader.in_place_rest(call, cp.in_place, snap, forward)
        return None

    async def _rest_write(self, call: RestCall, rest: str, cp: CallPlan, snap: StateSnapshot,
                          forward: RestForward) -> RestReply:
        """A REST write: decoded once for stamping and the mirror's intent, stamped when bound,
        given B's vector in place, then written (mirrored while a migration has a secondary)."""
        op_kind = _REST_METADATA_WRITES.get((call.method, rest))
        bound = snap.binding_for(cp.bound_as) if op_kind is not None else None
        mirror = cp.mirror
        decoded = None
        if bound is not None and op_kind is not None:
            decoded = rest_codec.decode(op_kind, cp.bound_as, call.body, measure=bound[0].enforce)
        intent = None
        if mirror is not None:
            # one decode serves both: the intent is read before stamping and inference change it
            parsed = decoded[1].body if decoded is not None else parse_exact(call.body)
            intent = rest_intent(call.method, rest, parsed, mirror.migration.text_field)
            if split_mirror.is_split(mirror.migration) and (
                    refusal := split_mirror.admission_rest(mirror.migration, call.method, rest, parsed)):
                raise BadRequest(refusal)  # before the primary: the point would have no target
        if bound is not None:
            body = await self._stamped(decoded, snap, "rest")
            call = call if body is None else call.with_body(body)
        if cp.in_place_write is not None:
            m, cfg = cp.in_place_write
            body = await in_place_writes.rest_body(rest, call.body, cfg, m, snap, self.pool)
            call = call if body is None else call.with_body(body)
        if mirror is not None and self.mirror is not None:
            return await self._mirrored(call, forward, mirror, intent)
        return await forward(call)

    async def _stamped(self, decoded: Any, snap: StateSnapshot, protocol: str) -> bytes | None:
        """Plan a decoded write, stamp it and serve its inference objects; the bytes to forward
        instead of the client's, or ``None`` to forward the client's bytes as they are."""
        if decoded is None:
            UNDECODABLE.labels(protocol).inc()
            return None
        op, message = decoded
        verdict = self._decide(plan(op, snap), len(op.points))
        if verdict.action is not Action.STAMP:
            return None
        message.stamp(verdict.stamp)
        if self.pool is not None:
            await inference.serve(message.inference_slots(), snap, self.pool)
        return bytes(message.encode())

    def _admit(self, cp: CallPlan, snap: StateSnapshot, collection: str, kind: str) -> None:
        """After the credential: fail closed on stale state, then refuse a write to a closed
        split (a refused caller learns nothing of the state)."""
        if self.state_guard is not None:
            self.state_guard.check(snap.migrations, collection, kind)
        if cp.closed is not None:
            raise BadRequest(cp.closed)

    # -- gRPC

    def grpc_wants(self, method: str) -> bool:
        if self.reserved is not None and self.reserved.grpc_wants(method):
            return True
        if grpc_kind(method) is None:
            return False
        snap = self._state.snapshot
        return bool(snap.migrations) or bool(snap.bindings)

    async def grpc(self, call: GrpcCall, forward: GrpcForward) -> GrpcReply:
        if self.reserved is not None and (
                own := await self.reserved.grpc(call, forward, self._state.snapshot)) is not None:
            return own
        kind = grpc_kind(call.method)
        collection = grpc_collection(call.request)
        if kind is None or collection is None:
            return await forward(call)
        snap = self._state.snapshot
        similarity = kind == "read" and self.reader is not None and is_similarity_grpc(call.method)
        cp = dispatch(snap, collection, kind, similarity, self.reader is not None)
        if self.credentials is not None and cp.checked and (
                refused := await self.credentials.grpc(call, cp.physical, kind, forward)) is not None:
            return refused  # the upstream's own UNAUTHENTICATED / PERMISSION_DENIED
        self._admit(cp, snap, collection, kind)
        if cp.serve is Serve.SPLIT_READ:
            assert self.reader is not None
            return await split_exec_grpc.grpc_read(self.reader, call, cp.split, snap, forward)  # split targets
        if (read := await self._grpc_read(call, cp, snap, forward)) is not None:  # MERGED, IN_PLACE_READ
            return replace(read, initial_metadata=(*read.initial_metadata, (ROUTE_HEADER, cp.why or "")))
        if cp.physical != collection:
            call = call.with_request(rename_grpc(call.request, cp.physical))
        if cp.serve is Serve.INFERENCE:
            assert self.reader is not None
            reply = await self.reader.resolve_inference_grpc(call, cp.bound_as, snap, forward)
        elif cp.serve is Serve.WRITE:
            reply = await self._grpc_write(call, cp, snap, forward)
        else:
            reply = await forward(call)
        return reply if cp.why is None else replace(
            reply, initial_metadata=(*reply.initial_metadata, (ROUTE_HEADER, cp.why)))

    async def _grpc_read(self, call: GrpcCall, cp: CallPlan, snap: StateSnapshot,
                         forward: GrpcForward) -> GrpcReply | None:
        """The reader's answer on the MERGED and IN_PLACE_READ paths; ``None`` on the others."""
        if self.reader is not None and cp.merging is not None:
            return await self.reader.grpc(call, *cp.merging, snap, forward)
        if self.reader is not None and cp.in_place is not None:
            return await self.reader.in_place_grpc(call, cp.in_place, snap, forward)
        return None

    async def _grpc_write(self, call: GrpcCall, cp: CallPlan, snap: StateSnapshot,
                          forward: GrpcForward) -> GrpcReply:
        """A gRPC write: parsed once for stamping and the mirror's intent (a mirrored upsert's
        points walked once), stamped when bound, given B's vector in place, then written."""
        method = call.method.rsplit("/", 1)[-1]
        mirror = cp.mirror if self.mirror is not None else None
        stamping = call.method in grpc_codec.METHODS and snap.is_bound(cp.bound_as)
        decoded = grpc_codec.decode(call.method, call.request, with_payloads=mirror is not None) if stamping else None
        if decoded is not None and decoded[0].collection != cp.bound_as:  # planned under the governing binding
            decoded = (replace(decoded[0], collection=cp.bound_as), decoded[1])
        intent = None
        if mirror is not None:
            # one parse and one walk serve both: the intent is read before stamping and inference change it
            intent = grpc_intent(method, call.request, mirror.migration.text_field,
                                 decoded[1].message if decoded is not None else None,
                                 decoded[1].points_json if decoded is not None else None)
            if split_mirror.is_split(mirror.migration) and (
                    refusal := split_mirror.admission_grpc(mirror.migration, method, call.request)):
                raise BadRequest(refusal)  # before the primary: the point would have no target
        if stamping:
            request = await self._stamped(decoded, snap, "grpc")
            call = call if request is None else call.with_request(request)
        if cp.in_place_write is not None:
            m, cfg = cp.in_place_write
            request = await in_place_writes.grpc_request(call.method, call.request, cfg, m, snap, self.pool)
            call = call if request is None else call.with_request(request)
        if mirror is not None:
            return await self._mirrored(call, forward, mirror, intent, call.metadata)
        return await forward(call)

    async def _mirrored(self, call: Any, forward: Any, target: MirrorTarget,
                        intent: WriteIntent | None, headers: Any = None) -> Any:
        """Primary first (after its write-ahead intent); the secondary only as the primary's
        answer requires; the client gets the primary's reply (``switchyard.proxy.dataplane.mirror``)."""
        assert self.mirror is not None
        if isinstance(call, RestCall):  # the primary must have applied when it answers
            call = replace(call, query=waited_query(call.query))
        elif intent is not None:  # only bytes that parsed: a field appended to broken bytes could mend them
            call = call.with_request(waited_request(call.method.rsplit("/", 1)[-1], call.request))
        return await self.mirror.write(target, intent, headers if headers is not None else call.headers,
                                       lambda: forward(call))

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

