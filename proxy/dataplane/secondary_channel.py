"""The mirror's gRPC leg for embedded secondary upserts, with its fall-back to REST.

The secondary model's vectors are most of a mirrored upsert's bytes; over gRPC they go as
packed floats straight from the embedder's numpy rows (``secondary_grpc.py``), which saves the
proxy the printing of every float as JSON. The channel is the proxy's own to the upstream's
gRPC address. It is an optimisation, never a new way to fail: when the request cannot be
encoded (an integer payload value beyond int64) or the gRPC call fails for any reason, the
caller writes the same points over REST (an upsert of the same points is idempotent, so a gRPC
call that may have applied before failing is harmless), and after a failed call the gRPC leg
rests for :data:`REST_SECONDS` (an upstream whose gRPC port is closed or firewalled costs one
failed call a minute, not one per write). The reason is logged and kept in :attr:`reason`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import Counter

from switchyard.proxy.dataplane import secondary_grpc
from switchyard.proxy.wire import GrpcCall, GrpcForward, Headers

log = logging.getLogger("switchyard.mirror")

REST_SECONDS = 60.0
_CREDENTIALS = ("api-key", "authorization")

SECONDARY = Counter("switchyard_mirror_secondary_writes_total",
                    "Embedded secondary upserts by the protocol that carried them.", ["protocol"])
_BY_GRPC, _BY_REST = SECONDARY.labels("grpc"), SECONDARY.labels("rest")


class SecondaryChannel:
    def __init__(self, forward: GrpcForward, timeout: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._forward, self._timeout, self._clock = forward, timeout, clock
        self._resting_until = 0.0
        self.reason: str | None = None  # why the last write went over REST instead

    async def upsert(self, collection: str, headers: Headers, ids: Sequence[Any],
                     payloads: Sequence[Mapping[str, Any]], vectors: np.ndarray, vector_name: str,
                     metadata: Mapping[str, Any]) -> bool:
        """True when the points were written over gRPC; False: write them over REST."""
        if self._clock() < self._resting_until:
            _BY_REST.inc()
            return False
        try:
            body = secondary_grpc.upsert_request(collection, ids, payloads, vectors, vector_name, metadata)
        except (ValueError, TypeError, OverflowError) as exc:
            return self._fallback(f"the write cannot go over gRPC ({exc}); this one goes over REST", rest=False)
        metadata_pairs = tuple((k, v) for k, v in headers if k in _CREDENTIALS)
        try:
            reply = await self._forward(GrpcCall(secondary_grpc.METHOD, body, metadata_pairs, self._timeout))
        except Exception as exc:  # noqa: BLE001 - the channel itself failed: REST decides
            return self._fallback(f"the upstream's gRPC channel failed ({type(exc).__name__}: {exc}); "
                                  f"secondary upserts go over REST for {REST_SECONDS:.0f} s", rest=True)
        if not reply.ok:
            return self._fallback(f"the upstream's gRPC answered {reply.code}: {reply.details[:200]}; "
                                  f"secondary upserts go over REST for {REST_SECONDS:.0f} s", rest=True)
        _BY_GRPC.inc()
        return True

    def _fallback(self, reason: str, rest: bool) -> bool:
        if rest:
            self._resting_until = self._clock() + REST_SECONDS
        if reason != self.reason:
            log.warning("mirror: %s", reason)
        self.reason = reason
        _BY_REST.inc()
        return False
