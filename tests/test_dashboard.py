"""The Grafana dashboard queries only what the code exports, and the compose stack provisions it.

Every PromQL expression of ``deploy/grafana/switchyard.json`` is read for metric names and the
labels it groups or filters by; each name must be one a Switchyard collector exports (with the
suffix its type produces: ``_total`` for counters, ``_bucket`` / ``_sum`` / ``_count`` for
histograms) and each label one that metric carries. No Docker engine runs here, so the compose
stack (Prometheus scraping the proxy, Grafana with the dashboard and its data source) is checked
by parsing the compose, Prometheus and provisioning files.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy/grafana/switchyard.json"
_METRIC = re.compile(r"\b(switchyard_[a-z0-9_]+)\b(\{[^}]*\})?")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> dict[str, tuple[str, set[str]]]:
    """Every Switchyard metric a collector exports: name -> (type, label names)."""
    for package in ("switchyard.proxy", "switchyard.backfill"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            if "_gen" not in info.name and not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    found: dict[str, tuple[str, set[str]]] = {}
    for collector in set(REGISTRY._names_to_collectors.values()):  # type: ignore[attr-defined]
        name = getattr(collector, "_name", "")
        if name.startswith("switchyard_"):
            found[name] = (collector._type, set(collector._labelnames))
    return found


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def resolve(series: str, metrics: dict[str, tuple[str, set[str]]]) -> tuple[str, str, set[str]] | None:
    """``(base name, type, labels)`` of the collector a series name comes from, or ``None``."""
    for base, (kind, labels) in metrics.items():
        for suffix in _SUFFIXES.get(kind, ("",)):
            if series == base + suffix:
                return base, kind, labels | ({"le"} if suffix == "_bucket" else set())
    return None


def test_every_panel_queries_exported_metrics_and_labels() -> None:
    metrics = exported()
    dashboard = json.loads(DASHBOARD.read_text())
    targets = _targets(dashboard)
    assert len(targets) >= 20
    assert {p["type"] for p in dashboard["panels"]} <= {"timeseries", "stat", "row"}  # Grafana built-ins
    problems = []
    for title, expr in targets:
        found = [(m[1], m[2] or "") for m in _METRIC.finditer(expr)]
        assert found, f"{title}: no Switchyard metric in {expr}"
        resolved = []
        for series, matchers in found:
            hit = resolve(series, metrics)
            if hit is None:
                problems.append(f"{title}: {series} is not exported")
                continue
            resolved.append(hit)
            for label in _MATCHER.findall(matchers):
                if label not in hit[2]:
                    problems.append(f"{title}: {series} has no label {label}")
        for group in _BY.findall(expr):
            for label in filter(None, (s.strip() for s in group.split(","))):
                for base, _, labels in resolved:
                    if label not in labels:
                        problems.append(f"{title}: {base} has no label {label} to group by")
    assert not problems, "\n".join(problems)


def test_dashboard_covers_what_operators_watch() -> None:
    text = DASHBOARD.read_text()
    for metric in ("switchyard_proxy_request_duration_seconds", "switchyard_proxy_upstream_duration_seconds",
                   "switchyard_mirrored_writes_total", "switchyard_repair_log_appends_total",
                   "switchyard_merged_reads_total", "switchyard_shadow_overlap_at_k", "switchyard_backfill_rate",
                   "switchyard_backfill_done_points", "switchyard_backfill_paused"):
        assert metric in text, metric


def test_a_wrong_metric_is_caught() -> None:
    """The check can fail: a made-up name and a made-up label are reported."""
    metrics = exported()
    assert resolve("switchyard_no_such_thing_total", metrics) is None
    assert resolve("switchyard_mirrored_writes_total", metrics) is not None
    base, _, labels = resolve("switchyard_mirrored_writes_total", metrics)  # type: ignore[misc]
    assert "outcome" in labels and "color" not in labels


def test_compose_runs_prometheus_and_grafana_with_the_dashboard() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"qdrant", "switchyard", "prometheus", "grafana"} <= set(services)
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"] if v.startswith("./")}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/switchyard.yml").read_text())
    path = dashboards["providers"][0]["options"]["path"]
    assert mounts["./deploy/grafana/switchyard.json"] == f"{path}/switchyard.json"
    sources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    prom_mounts = {v.split(":")[0]: v.split(":")[1] for v in services["prometheus"]["volumes"] if v.startswith("./")}
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert prom_mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["switchyard"]["metrics_path"] == "/switchyard/metrics"
    assert jobs["switchyard"]["static_configs"][0]["targets"] == ["switchyard:6333"]
    assert "--metrics-port 9464" in " ".join(services["backfill"]["command"])
    assert jobs["switchyard-backfill"]["dns_sd_configs"][0]["port"] == 9464
    for name in ("grafana", "prometheus"):
        for secret in services[name].get("secrets", []):
            assert secret in compose["secrets"]
    assert all(p.startswith("127.0.0.1:") for p in services["grafana"]["ports"])  # loopback only
