"""Prometheus metrics of the front ends (served at ``/switchyard/metrics``): "is it the proxy?"

``switchyard_proxy_request_duration_seconds{protocol, kind, status_class}`` is the time from a
request's head to its answer as the proxy saw it; ``switchyard_proxy_upstream_duration_seconds
{protocol, kind}`` the time the upstream took (send to last byte of a buffered reply, to the
end of a streamed one). Their difference is the proxy's own added latency. ``kind`` is
``passthrough``, ``admin`` (own routes) or, for intercepted calls, ``write`` / ``read`` /
``other`` (from :mod:`switchyard.proxy.intercept.routes`). ``status_class`` is ``2xx`` .. ``5xx``; gRPC
codes map to the HTTP class of the standard gRPC/HTTP mapping (OK 2xx, caller errors 4xx, the
rest 5xx).

Children are bound once (``labels()`` costs a dict lookup and a lock per call), at import or on
first use, so the hot path does a tuple-keyed dict lookup and ``observe``. They live on the default registry, next
to the interception metrics. With several workers (``--workers``) prometheus-client runs in
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, owned by the supervisor) and
:func:`exposition` merges every worker's values, so any worker's endpoint covers all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

Observer = Callable[[float], None]

PASSTHROUGH, ADMIN, WRITE, READ, OTHER = "passthrough", "admin", "write", "read", "other"
KINDS = (PASSTHROUGH, ADMIN, WRITE, READ, OTHER)
#: Sub-millisecond resolution where a relay's own cost lives, up to slow searches.
BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
           5.0, 10.0, 30.0, float("inf"))

REQUESTS = Counter("switchyard_proxy_requests_total",
                   "Calls received by the proxy front ends.", ["protocol", "path"])
UPSTREAM_ERRORS = Counter("switchyard_proxy_upstream_errors_total",
                          "Calls answered with 502/504 (UNAVAILABLE/DEADLINE_EXCEEDED) by the proxy "
                          "itself because the upstream failed.", ["protocol"])
IN_FLIGHT = Gauge("switchyard_proxy_in_flight", "Calls being served right now.", ["protocol"],
                  multiprocess_mode="livesum")
WORKER = Gauge("switchyard_proxy_worker", "1 per live proxy worker process (label: worker index).",
               ["worker"], multiprocess_mode="liveall")
REQUEST_DURATION = Histogram(
    "switchyard_proxy_request_duration_seconds",
    "Seconds from a request's head to its answer, as the proxy saw it.",
    ["protocol", "kind", "status_class"], buckets=BUCKETS)
UPSTREAM_DURATION = Histogram(
    "switchyard_proxy_upstream_duration_seconds",
    "Seconds the upstream took for the proxy's calls to it.", ["protocol", "kind"], buckets=BUCKETS)

REST_PASSTHROUGH = REQUESTS.labels("rest", "passthrough")
REST_INTERCEPTED = REQUESTS.labels("rest", "intercepted")
GRPC_PASSTHROUGH = REQUESTS.labels("grpc", "passthrough")
GRPC_INTERCEPTED = REQUESTS.labels("grpc", "intercepted")
REST_UPSTREAM_ERRORS = UPSTREAM_ERRORS.labels("rest")
GRPC_UPSTREAM_ERRORS = UPSTREAM_ERRORS.labels("grpc")
REST_IN_FLIGHT = IN_FLIGHT.labels("rest")
GRPC_IN_FLIGHT = IN_FLIGHT.labels("grpc")

#: Duration children by (protocol, kind, status class digit), bound on first use (so a scrape
#: does not list dozens of empty histograms) and then only looked up.
_DURATION: dict[tuple[str, str, int], Observer] = {}


def _duration(protocol: str, kind: str, cls: int) -> Observer:
    key = (protocol, kind, cls)
    observe = _DURATION.get(key)
    if observe is None:
        observe = _DURATION[key] = REQUEST_DURATION.labels(protocol, kind, f"{cls}xx").observe
    return observe

REST_UPSTREAM_PASSTHROUGH: Observer = UPSTREAM_DURATION.labels("rest", PASSTHROUGH).observe
REST_UPSTREAM_ADMIN: Observer = UPSTREAM_DURATION.labels("rest", ADMIN).observe
REST_UPSTREAM_INTERCEPTED: Observer = UPSTREAM_DURATION.labels("rest", "intercepted").observe
GRPC_UPSTREAM_PASSTHROUGH: Observer = UPSTREAM_DURATION.labels("grpc", PASSTHROUGH).observe
GRPC_UPSTREAM_INTERCEPTED: Observer = UPSTREAM_DURATION.labels("grpc", "intercepted").observe

#: gRPC status code names answered by the caller's own mistake (HTTP 4xx in the standard mapping).
_GRPC_CALLER_CODES = frozenset({"CANCELLED", "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS",
                                "PERMISSION_DENIED", "UNAUTHENTICATED", "FAILED_PRECONDITION",
                                "OUT_OF_RANGE", "ABORTED", "RESOURCE_EXHAUSTED"})


def grpc_status_class(code: str) -> int:
    """``OK`` → 2, caller errors → 4, everything else → 5 (pure)."""
    if code == "OK":
        return 2
    return 4 if code in _GRPC_CALLER_CODES else 5


def rest_done(kind: str, status: int, started: float) -> None:
    """Record one answered REST call (``kind`` from :data:`KINDS`)."""
    cls = status // 100
    _duration("rest", kind, cls if 1 <= cls <= 5 else 5)(time.perf_counter() - started)


def grpc_done(kind: str, code: str, started: float) -> None:
    """Record one answered gRPC call (``code``: a ``grpc.StatusCode`` member name)."""
    _duration("grpc", kind, grpc_status_class(code))(time.perf_counter() - started)


def mark_worker(index: int) -> None:
    """This process is proxy worker ``index`` (shows which workers a scrape covers)."""
    WORKER.labels(str(index)).set(1)


def exposition() -> tuple[bytes, str]:
    """The metrics text: this process's registry, or every worker's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
