"""Credential checks: the proxy does no work for a caller the upstream would refuse.

Before the proxy embeds, mirrors or merges anything for an intercepted call, it asks the
upstream whether the caller's own credential (``api-key`` header / metadata, or
``Authorization: Bearer``) may do that call's *class* of access on that collection, and
answers a refused caller with the upstream's own 401 / 403 (REST) or ``UNAUTHENTICATED`` /
``PERMISSION_DENIED`` (gRPC) reply, exactly as Qdrant would.

Which probes, and why they are judged by the same rules as the real call:

* **Does the upstream need a key at all?** A *keyless* read probe, once per TTL and protocol:
  a 2xx (or 404) means no key is configured and no further checks are made; 401/403 means it
  needs one.
* **Read access**: ``GET /collections/{c}/exists`` (REST) / ``qdrant.Collections/CollectionExists``
  (gRPC) with the caller's credential. Qdrant authorises it like every read of ``c``: any valid
  key (full or read-only) passes; a JWT passes when it grants any access to ``c``.
* **Write access**: a write-class call that changes nothing, ``POST /collections/{c}/points/delete``
  with ``{"points": []}`` (``wait=false``) / ``qdrant.Points/Delete`` with no ids. Its body is
  valid by Qdrant's schema, so its answer is decided by the same access check as the real
  write: 401 for a missing or unknown key, 403 for a read-only key (or a JWT without write access
  to ``c``). Past that check the empty request is refused as ``400 Empty update request`` (what
  the embedded upstream and qdrant-client's local mode answer) or applied as a no-op: both mean
  "may write". A 404 (no such collection) also comes after the access check, so it allows too;
  the real call then gets its own 404.

Verdicts are cached per ``(protocol, sha256 of the credential headers, access class,
collection)`` for a short TTL in a bounded ``cachetools.TTLCache``: the credential itself is never
kept. A probe whose answer says nothing about access (5xx, 429, a 400 to a read probe) is not
cached and lets the call go on: the real call's own answer then decides, and the work the proxy
may do meanwhile is bounded by the inference limits. Concurrent checks of one key share one
probe. The decision logic is pure (:func:`judge`, :func:`needs_key_from`, :func:`next_step`,
tested as tables); :class:`CredentialGate` only does the calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, TypeVar

from cachetools import TTLCache
from prometheus_client import Counter
from qdrant_client.grpc import collections_pb2, points_pb2

from switchyard.proxy.errors import UpstreamError
from switchyard.proxy.intercept.routes import rest_path
from switchyard.proxy.wire import GrpcCall, GrpcForward, GrpcReply, Headers, RestCall, RestForward, RestReply

log = logging.getLogger("switchyard.credentials")

READ, WRITE = "read", "write"
CREDENTIAL_HEADERS = ("api-key", "authorization")
DEFAULT_TTL = 10.0
DEFAULT_SIZE = 4096
PROBE_TIMEOUT = 10.0
_JSON = (("content-type", "application/json"),)
_EMPTY_DELETE = b'{"points":[]}'

CHECKS = Counter("switchyard_credential_checks_total",
                 "Credential verdicts for intercepted calls, by protocol, where the verdict came "
                 "from (probe, cache, open: the upstream needs no key) and outcome.",
                 ["protocol", "source", "outcome"])

T = TypeVar("T")
Reply = TypeVar("Reply", RestReply, GrpcReply)


class Outcome(Enum):
    ALLOW = "allow"      # the credential may do this class of access: cache
    REFUSE = "refuse"    # 401/403: cache; the caller gets the probe's own reply
    UNKNOWN = "unknown"  # the answer says nothing about access: go on, do not cache


class Step(Enum):
    GO = "go"                      # no check needed, or an allowing verdict is cached
    REFUSE = "refuse"              # a refusing verdict is cached
    PROBE_KEYLESS = "probe_keyless"  # not known yet whether the upstream needs a key
    PROBE = "probe"                # the upstream needs a key; this credential is not cached


# -- pure decisions --------------------------------------------------------------------------

def rest_status(status: int) -> str:
    """The access-relevant class of a REST status (pure)."""
    if 200 <= status < 300:
        return "ok"
    return {401: "unauthenticated", 403: "forbidden", 404: "not_found", 400: "bad_request"}.get(
        status, "other")


def grpc_status(code: str) -> str:
    """The access-relevant class of a gRPC status code name (pure)."""
    return {"OK": "ok", "UNAUTHENTICATED": "unauthenticated", "PERMISSION_DENIED": "forbidden",
            "NOT_FOUND": "not_found", "INVALID_ARGUMENT": "bad_request"}.get(code, "other")


def judge(access: str, status: str) -> Outcome:
    """What a probe's answer (``rest_status`` / ``grpc_status`` class) says about ``access``.

    A 400 allows only for the write probe: its body is schema-valid, so a 400 can only come
    from executing the empty delete, after the access check (module docstring).
    """
    if status in ("ok", "not_found"):
        return Outcome.ALLOW
    if status in ("unauthenticated", "forbidden"):
        return Outcome.REFUSE
    if status == "bad_request" and access == WRITE:
        return Outcome.ALLOW
    return Outcome.UNKNOWN


def needs_key_from(status: str) -> bool | None:
    """Whether a keyless probe's answer means the upstream requires a key (``None``: unknown)."""
    if status in ("ok", "not_found"):
        return False
    if status in ("unauthenticated", "forbidden"):
        return True
    return None


def next_step(needs_key: bool | None, cached: Outcome | None) -> Step:
    """What to do for a call: ``needs_key`` as last probed (``None``: not known), ``cached`` the
    verdict held for this credential, access class and collection (``None``: none)."""
    if needs_key is None:
        return Step.PROBE_KEYLESS
    if not needs_key or cached is Outcome.ALLOW:
        return Step.GO
    if cached is Outcome.REFUSE:
        return Step.REFUSE
    return Step.PROBE


def credential_digest(headers: Headers) -> str:
    """sha256 over the credential headers a call carries (empty input for a keyless caller)."""
    pairs = sorted((k, v) for k, v in headers if k in CREDENTIAL_HEADERS)
    return hashlib.sha256("\n".join(f"{k}:{v}" for k, v in pairs).encode("utf-8")).hexdigest()


def credentials_only(headers: Headers) -> Headers:
    return tuple((k, v) for k, v in headers if k in CREDENTIAL_HEADERS)


def _outcome(cached: tuple[Outcome, object] | None) -> Outcome | None:
    return cached[0] if cached is not None else None


# -- I/O -------------------------------------------------------------------------------------

class CredentialGate:
    """Checks callers' credentials with the upstream, caching verdicts (module docstring).

    ``rest`` / ``grpc`` return ``None`` when the call may go on, or the reply the caller gets.
    """

    def __init__(self, ttl: float = DEFAULT_TTL, size: int = DEFAULT_SIZE) -> None:
        self.ttl = ttl
        self._needs_key: TTLCache[str, bool] = TTLCache(maxsize=4, ttl=ttl)
        self._verdicts: TTLCache[tuple[str, str, str, str], tuple[Outcome, object]] = TTLCache(
            maxsize=size, ttl=ttl)
        self._inflight: dict[tuple[str, ...], asyncio.Future[Any]] = {}

    async def rest(self, call: RestCall, collection: str, access: str,
                   forward: RestForward) -> RestReply | None:
        creds = credentials_only(call.headers)

        def probe(headers: Headers, kind: str) -> Awaitable[RestReply]:
            if kind == WRITE:
                return forward(RestCall("POST", rest_path(collection, "/points/delete"), "wait=false",
                                        headers + _JSON, _EMPTY_DELETE))
            return forward(RestCall("GET", rest_path(collection, "/exists"), "", headers, b""))

        return await self._check("rest", creds, collection, access, probe,
                                 lambda r: rest_status(r.status))

    async def grpc(self, call: GrpcCall, collection: str, access: str,
                   forward: GrpcForward) -> GrpcReply | None:
        creds = credentials_only(call.metadata)
        timeout = min(call.timeout, PROBE_TIMEOUT) if call.timeout is not None else PROBE_TIMEOUT

        def probe(metadata: Headers, kind: str) -> Awaitable[GrpcReply]:
            if kind == WRITE:
                request = points_pb2.DeletePoints(
                    collection_name=collection, wait=False,
                    points=points_pb2.PointsSelector(points=points_pb2.PointsIdsList(ids=[])))
                return forward(GrpcCall("/qdrant.Points/Delete", request.SerializeToString(),
                                        metadata, timeout))
            request_bytes = collections_pb2.CollectionExistsRequest(
                collection_name=collection).SerializeToString()
            return forward(GrpcCall("/qdrant.Collections/CollectionExists", request_bytes,
                                    metadata, timeout))

        reply = await self._check("grpc", creds, collection, access, probe,
                                  lambda r: grpc_status(r.code))
        return None if reply is None else GrpcReply(None, reply.code, reply.details,
                                                    trailing_metadata=reply.trailing_metadata)

    async def _check(self, protocol: str, creds: Headers, collection: str, access: str,
                     probe: Callable[[Headers, str], Awaitable[Reply]],
                     status: Callable[[Reply], str]) -> Reply | None:
        key = (protocol, credential_digest(creds), access, collection)
        cached = self._verdicts.get(key)  # read once: an entry may expire between two reads
        step = next_step(self._needs_key.get(protocol), _outcome(cached))
        if step is Step.PROBE_KEYLESS:
            keyless = await self._once(("keyless", protocol, collection), lambda: probe((), READ))
            needs = needs_key_from(status(keyless))
            if needs is not None:
                self._needs_key[protocol] = needs
            if needs:  # that probe is also the keyless caller's read verdict
                anonymous = (protocol, credential_digest(()), READ, collection)
                self._verdicts[anonymous] = (Outcome.REFUSE, keyless)
                cached = self._verdicts.get(key) if key == anonymous else cached
            step = next_step(True if needs is None else needs, _outcome(cached))
        if step is not Step.PROBE:
            source = "open" if step is Step.GO and cached is None else "cache"
            CHECKS.labels(protocol, source, "refuse" if step is Step.REFUSE else "allow").inc()
            return cached[1] if step is Step.REFUSE and cached else None  # type: ignore[return-value]
        reply = await self._once(key, lambda: probe(creds, access))
        outcome = judge(access, status(reply))
        if outcome is not Outcome.UNKNOWN:
            self._verdicts[key] = (outcome, reply)
        if outcome is not Outcome.ALLOW:  # nothing of the credential (not even its digest) is logged
            log.log(logging.INFO if outcome is Outcome.REFUSE else logging.WARNING,
                    "%s %s access to %s (%s): upstream answered %s, %s", protocol, access, collection,
                    "with a credential" if creds else "no credential", status(reply),
                    "refused (its reply is the caller's)" if outcome is Outcome.REFUSE
                    else "inconclusive, the call goes on unchecked")
        CHECKS.labels(protocol, "probe", outcome.value).inc()
        return reply if outcome is Outcome.REFUSE else None

    async def _once(self, key: tuple[str, ...], probe: Callable[[], Awaitable[T]]) -> T:
        """Run ``probe``; concurrent calls with one ``key`` wait for the first one's answer."""
        pending = self._inflight.get(key)
        if pending is not None:
            result: T = await asyncio.shield(pending)
            return result
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await probe()
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else
                                 UpstreamError("credential check interrupted"))
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(result)
            return result
        finally:
            self._inflight.pop(key, None)
