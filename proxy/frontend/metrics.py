"""Prometheus metrics of the pass-through front ends (served at ``/switchyard/metrics``).

Children are bound once at import (``labels()`` costs a dict lookup and a lock per call), so the
hot path only increments. They live on the default registry, next to the interception metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REQUESTS = Counter("switchyard_proxy_requests_total",
                   "Calls received by the proxy front ends.", ["protocol", "path"])
UPSTREAM_ERRORS = Counter("switchyard_proxy_upstream_errors_total",
                          "Calls answered with 502/504 (UNAVAILABLE/DEADLINE_EXCEEDED) by the proxy "
                          "itself because the upstream failed.", ["protocol"])
IN_FLIGHT = Gauge("switchyard_proxy_in_flight", "Calls being served right now.", ["protocol"])

REST_PASSTHROUGH = REQUESTS.labels("rest", "passthrough")
REST_INTERCEPTED = REQUESTS.labels("rest", "intercepted")
GRPC_PASSTHROUGH = REQUESTS.labels("grpc", "passthrough")
GRPC_INTERCEPTED = REQUESTS.labels("grpc", "intercepted")
REST_UPSTREAM_ERRORS = UPSTREAM_ERRORS.labels("rest")
GRPC_UPSTREAM_ERRORS = UPSTREAM_ERRORS.labels("grpc")
REST_IN_FLIGHT = IN_FLIGHT.labels("rest")
GRPC_IN_FLIGHT = IN_FLIGHT.labels("grpc")
