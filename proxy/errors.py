"""Switchyard's error tree: every error a client or operator can see.

::

    SwitchyardError                       500 INTERNAL            base; Qdrant-shaped on the wire
    ├── BadRequest                        400 INVALID_ARGUMENT    malformed or invalid input
    │   ├── PayloadTooLarge               413 INVALID_ARGUMENT    body over the configured limit
    │   └── EnforcementError              400 INVALID_ARGUMENT    a write does not fit its bound model
    ├── Unauthorized                      401 UNAUTHENTICATED     missing or wrong API / admin key
    ├── Forbidden                         403 PERMISSION_DENIED   key valid but not allowed (read-only)
    ├── NotFound                          404 NOT_FOUND           unknown collection, point, model, migration
    ├── Conflict                          409 ALREADY_EXISTS      exists already, or a lost compare-and-set
    ├── RateLimitExceeded                 429 RESOURCE_EXHAUSTED  a collection's strict-mode rate limit
    ├── Unsupported                       501 UNIMPLEMENTED       valid request this server cannot serve
    ├── StateUnavailable                  503 UNAVAILABLE         the proxy cannot read its migration state
    ├── UpstreamError                     502 UNAVAILABLE         Qdrant unreachable or answered garbage
    │   └── UpstreamTimeout               504 DEADLINE_EXCEEDED   Qdrant did not answer in time
    ├── EmbedderError                     502 UNAVAILABLE         the embedding provider failed
    │   ├── EmbedderBadInput              400 INVALID_ARGUMENT    the provider refused the input
    │   ├── RateLimited                   429 RESOURCE_EXHAUSTED  provider said 429 after all retries
    │   ├── ProviderDown                  503 UNAVAILABLE         5xx / timeouts after all retries
    │   └── WrongDimension                502 INTERNAL            provider returned vectors of another size
    └── ConfigError                       (start-up only)         invalid configuration; exits with code 2

Foreign errors (aiohttp, grpc, qdrant-client, ValueError from the local engine) are translated
at the seam where they enter with ``raise ... from exc``, so the rest of the code handles only
these. The wire shape is Qdrant's: REST ``{"status": {"error": msg}, "time": t}`` with the
status code above; gRPC the status code named above with ``msg`` as details. This module does
not import grpc: codes are named by their ``grpc.StatusCode`` member name and the gRPC front
ends map them.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import orjson


class SwitchyardError(Exception):
    """Base of every Switchyard error; carries the Qdrant-shaped message and status codes."""

    http_status: ClassVar[int] = 500
    grpc_code: ClassVar[str] = "INTERNAL"
    prefix: ClassVar[str] = "Service internal error: "

    def __init__(self, message: str, *, raw: bool = False) -> None:
        super().__init__(message)
        self.message = message if raw else f"{self.prefix}{message}"

    def to_body(self, elapsed: float = 0.0) -> dict[str, Any]:
        """The REST body Qdrant sends for an error."""
        return {"status": {"error": self.message}, "time": elapsed}

    def to_json(self, elapsed: float = 0.0) -> bytes:
        return orjson.dumps(self.to_body(elapsed))

    def __str__(self) -> str:
        return self.message


class BadRequest(SwitchyardError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"
    prefix = "Wrong input: "


class PayloadTooLarge(BadRequest):
    http_status = 413
    prefix = "Payload too large: "


class EnforcementError(BadRequest):
    prefix = "Wrong input: "


class Unauthorized(SwitchyardError):
    http_status = 401
    grpc_code = "UNAUTHENTICATED"
    prefix = ""


class Forbidden(SwitchyardError):
    http_status = 403
    grpc_code = "PERMISSION_DENIED"
    prefix = "Forbidden: "


class NotFound(SwitchyardError):
    http_status = 404
    grpc_code = "NOT_FOUND"
    prefix = "Not found: "


class Conflict(SwitchyardError):
    http_status = 409
    grpc_code = "ALREADY_EXISTS"
    prefix = ""


class RateLimitExceeded(SwitchyardError):
    """Qdrant's strict-mode rate limit (embedded upstream); ``retry_after`` in whole seconds,
    ``None`` when the call can never pass (REST ``Retry-After`` header, gRPC ``retry-after``)."""

    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    prefix = "Rate limiting exceeded: "

    def __init__(self, message: str, *, raw: bool = False, retry_after: int | None = None) -> None:
        super().__init__(message, raw=raw)
        self.retry_after = retry_after


class Unsupported(SwitchyardError):
    http_status = 501
    grpc_code = "UNIMPLEMENTED"
    prefix = "Unsupported: "


class StateUnavailable(SwitchyardError):
    """Fail closed: the proxy's state snapshot is too old to know whether a write must be mirrored."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    prefix = "Service unavailable: "


class UpstreamError(SwitchyardError):
    http_status = 502
    grpc_code = "UNAVAILABLE"
    prefix = "Upstream unavailable: "


class UpstreamTimeout(UpstreamError):
    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"
    prefix = "Timeout error: "


class EmbedderError(SwitchyardError):
    http_status = 502
    grpc_code = "UNAVAILABLE"
    prefix = "Embedding provider error: "


class EmbedderBadInput(EmbedderError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class RateLimited(EmbedderError):
    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    prefix = "Rate limited: "


class ProviderDown(EmbedderError):
    http_status = 503
    grpc_code = "UNAVAILABLE"


class WrongDimension(EmbedderError):
    grpc_code = "INTERNAL"


class ConfigError(SwitchyardError):
    prefix = "Invalid configuration: "


def error_body(message: str, started: float | None = None) -> bytes:
    """A Qdrant-shaped error body for a message that is already in Qdrant's words."""
    elapsed = time.perf_counter() - started if started is not None else 0.0
    return orjson.dumps({"status": {"error": message}, "time": elapsed})
