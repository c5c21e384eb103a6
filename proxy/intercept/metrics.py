"""Prometheus metrics of the interception path (served at ``/switchyard/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter

POINTS_STAMPED = Counter(
    "switchyard_points_stamped_total",
    "Points written through the proxy that received embedding metadata.",
    ["collection", "model"],
)
FOREIGN_METADATA = Counter(
    "switchyard_foreign_metadata_points_total",
    "Points whose own metadata names another model than their collection's binding.",
    ["collection", "model"],
)
ENFORCE_REJECTIONS = Counter(
    "switchyard_enforce_rejections_total",
    "Writes rejected because a point did not fit the bound model (enforce mode).",
    ["collection", "model"],
)
UNDECODABLE = Counter(
    "switchyard_undecodable_writes_total",
    "Intercepted writes forwarded untouched because their body did not parse as a write.",
    ["protocol"],
)
