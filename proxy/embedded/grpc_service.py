"""The shared seam of the embedded gRPC servicers: auth, timing and error mapping per call.

Every method goes through :func:`rpc`, which does what Qdrant's tonic middleware and handlers
do around each call: check the API key (read or write), refuse shard-key selectors (the local
engine has one shard), fill the response's ``time``, and turn errors into status codes with
Qdrant's wording: :mod:`switchyard.proxy.errors` by their ``grpc_code``; a request that cannot be converted
(e.g. an unset oneof, which qdrant-client's converters reject with ``ValueError``) is
``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.embedded.engines import EngineSeam
from switchyard.proxy.errors import BadRequest, RateLimitExceeded, SwitchyardError, Unsupported

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Awaitable[Message]]
Method = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Message]]


class Service:
    """State shared by the servicers: the engine and the API keys."""

    def __init__(self, engine: EngineSeam, keys: ApiKeys) -> None:
        self.engine = engine
        self.keys = keys


def rpc(*, write: bool) -> Callable[[Handler], Method]:
    """Wrap ``async def handler(self, request) -> response`` as a gRPC method.

    ``write`` classifies the method for read-only API keys. Requests addressing shard keys are
    refused up front (the local engine has a single shard and would silently ignore them).
    """

    def wrap(handler: Handler) -> Method:
        @functools.wraps(handler)
        async def method(self: Service, request: Any, context: grpc.aio.ServicerContext) -> Message:
            started = time.perf_counter()
            try:
                self.keys.check(metadata_dict(context.invocation_metadata()), write=write)
                refuse_shard_keys(request)
                response = await handler(self, request)
            except SwitchyardError as exc:
                await abort(context, exc)
                raise  # unreachable: abort raises
            except ValueError as exc:  # converters on unset oneofs, pydantic on bad values
                await abort(context, BadRequest(f"Invalid request: {exc}"))
                raise
            except Exception as exc:  # a bug here must still answer, in Qdrant's shape
                log.exception("gRPC %s failed", handler.__name__)
                await abort(context, SwitchyardError(f"{type(exc).__name__}: {exc}"))
                raise
            set_time(response, time.perf_counter() - started)
            return response

        return method

    return wrap


async def abort(context: grpc.aio.ServicerContext, exc: SwitchyardError) -> None:
    """End the call with the error's status code and Qdrant-shaped message (raises); a rate
    limit says when to retry in ``retry-after`` metadata, as Qdrant does."""
    if isinstance(exc, RateLimitExceeded) and exc.retry_after is not None:
        context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
    await context.abort(status_code(exc), exc.message)


def status_code(exc: SwitchyardError) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` named by an error's ``grpc_code``."""
    return getattr(grpc.StatusCode, exc.grpc_code, grpc.StatusCode.INTERNAL)


def metadata_dict(metadata: Any) -> dict[str, str]:
    """Invocation metadata as a lower-case-keyed dict of text values (binary ones dropped)."""
    out: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str):
            out[key.lower()] = value
    return out


def refuse_shard_keys(request: Message) -> None:
    """Raise :class:`Unsupported` when a request selects shard keys."""
    fields = request.DESCRIPTOR.fields_by_name
    if "shard_key_selector" in fields and request.HasField("shard_key_selector"):
        raise Unsupported("shard keys are not supported by the embedded upstream (single shard)")


def set_time(response: Message, elapsed: float) -> None:
    """Fill ``time`` like Qdrant does, on every response that has the field."""
    if "time" in response.DESCRIPTOR.fields_by_name:
        setattr(response, "time", elapsed)


def unsupported(what: str) -> Handler:
    """A handler that answers ``UNIMPLEMENTED`` with ``what`` named."""

    async def handler(self: Service, request: Any) -> Message:
        raise Unsupported(f"{what} is not available in the embedded upstream")

    return handler
