"""The mirror's gRPC leg: a gRPC client's secondary upsert, and a copy-vectors mirror's re-read
of the primary, over the upstream's gRPC.

:class:`GrpcLeg` owns the forward to the upstream's gRPC and its rest after a failure: a failed
call (an RPC error, or anything raised) is logged once and the leg rests
:data:`REST_AFTER_FAILURE` seconds, during which :meth:`ready` is false and the mirror writes
over REST, as it does whenever the leg is not taken. So a fault of the gRPC leg alone never
becomes a difference, nor a warning per write. The requests themselves are ``secondary_grpc``'s
and ``reread_grpc``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from switchyard.proxy.dataplane import reread_grpc, secondary_grpc
from switchyard.proxy.dataplane.digest import DIGEST_FIELD
from switchyard.proxy.state.records import META_APPROXIMATE, META_FIELDS
from switchyard.proxy.wire import GrpcCall, GrpcForward, Headers

log = logging.getLogger("switchyard.mirror")

#: seconds the leg rests after a failure (its secondaries go over REST meanwhile)
REST_AFTER_FAILURE = 60.0
#: payload keys a secondary point never takes from the client's (``writes.strip_meta``, the digest)
STRIPPED = (*META_FIELDS, META_APPROXIMATE, DIGEST_FIELD)


class GrpcLeg:
    def __init__(self, forward: GrpcForward) -> None:
        self._forward = forward
        self._rests_until = 0.0  # monotonic

    def ready(self) -> bool:
        return time.monotonic() >= self._rests_until

    async def upsert(self, migration_id: str, collection: str, points: Sequence[Any], digests: Sequence[str | None],
                     rows: np.ndarray, vector_name: str, metadata: dict[str, Any], headers: Headers,
                     sent: Sequence[Mapping[str, Any]] | None = None) -> bool:
        """Send the secondary upsert; False (logged, leg resting) when it did not apply. ``sent``:
        the points' payloads as the client sent them (the stamp adds only metadata fields)."""
        try:
            body = secondary_grpc.upsert_request(collection, points, digests, rows, vector_name,
                                                 secondary_grpc.payload_entries(metadata), STRIPPED, DIGEST_FIELD,
                                                 sent, META_FIELDS)
            reply = await self._forward(GrpcCall(secondary_grpc.METHOD, body, headers))
        except Exception as exc:  # noqa: BLE001 - REST writes it instead
            return self._failed(f"migration {migration_id}", f"{type(exc).__name__}: {exc}")
        if reply.code != "OK":
            return self._failed(f"migration {migration_id}", f"answered {reply.code} ({reply.details[:200]})")
        return True

    async def retrieve(self, collection: str, ids: Sequence[Any], headers: Headers) -> list[dict[str, Any]] | None:
        """``ids`` of ``collection`` with payloads and vectors, as ``reread_grpc.points`` gives
        them; ``None`` (the REST re-read is to be used) when gRPC cannot carry the ids or the
        answer, or the call failed (logged, leg resting)."""
        body = reread_grpc.get_request(collection, ids)
        if body is None:
            return None
        try:
            reply = await self._forward(GrpcCall(reread_grpc.METHOD, body, headers))
        except Exception as exc:  # noqa: BLE001 - REST reads it instead
            self._failed(f"collection {collection}", f"{type(exc).__name__}: {exc}", "re-read")
            return None
        if reply.code != "OK" or reply.response is None:
            self._failed(f"collection {collection}", f"answered {reply.code} ({reply.details[:200]})", "re-read")
            return None
        try:
            return reread_grpc.points(reply.response)
        except Exception as exc:  # noqa: BLE001 - an answer this code cannot read: REST reads it
            self._failed(f"collection {collection}", f"unreadable answer: {type(exc).__name__}: {exc}", "re-read")
            return None

    def _failed(self, subject: str, why: str, what: str = "secondary") -> bool:
        self._rests_until = time.monotonic() + REST_AFTER_FAILURE
        log.warning("%s: %s over gRPC failed (%s); using REST for %.0f s", subject, what, why, REST_AFTER_FAILURE)
        return False
