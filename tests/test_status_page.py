"""The status page in headless Chromium: a migration started by the test renders with its
phase on the lifecycle, its proxies, its transitions (refused ones with the reason), and its
backfill progress advancing while a throttled daemon runs. The screenshot is kept as a test
artifact (``SWITCHYARD_TEST_ARTIFACTS``, default ``test-artifacts/`` in the repository).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import uuid

from qdrant_client import QdrantClient, models

from browser import drive
from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from test_mirrored_writes import _admin

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("SWITCHYARD_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def _planned_migrations(proxy: RunningProxy, upstream: Any, prefix: str, count: int) -> list[str]:
    """``count`` migrations left in ``planned``: more live migrations than a browser keeps
    connections to one host (6), so a page that streamed every one would starve the newest."""
    tag = uuid.uuid4().hex[:6]
    spec_a = ModelSpec(id=f"qa-{tag}", provider="hashing", model=f"qa-{tag}", dimensions=8)
    spec_b = ModelSpec(id=f"qb-{tag}", provider="hashing", model=f"qb-{tag}", dimensions=12)
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    ids = []
    try:
        for i in range(count):
            name = f"{prefix}other{i}"
            direct.create_collection(name, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
            proxy.register_and_bind(spec_a, Binding(name, spec_a.id))
            if i == 0:
                proxy.register_and_bind(spec_b, Binding(name, spec_a.id))  # registers B too
            ids.append(_admin(proxy, "/migrations", {"logical": name, "to_model": spec_b.id})["migration"]["id"])
    finally:
        direct.close()
    return ids


def _seeded_migration(proxy: RunningProxy, upstream: Any, prefix: str, points: int) -> tuple[str, Any]:
    """A source with ``points`` points, then a migration of it planned and started (so the
    backfill has them to do)."""
    tag = uuid.uuid4().hex[:6]
    spec_a = ModelSpec(id=f"pa-{tag}", provider="hashing", model=f"pa-{tag}", dimensions=8)
    spec_b = ModelSpec(id=f"pb-{tag}", provider="hashing", model=f"pb-{tag}", dimensions=12)
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    source, alias = f"{prefix}docs_v1", f"{prefix}docs"
    direct.create_collection(source, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    direct.update_collection_aliases([models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=source, alias_name=alias))])
    direct.upsert(source, [models.PointStruct(id=i, vector=[float((i % 7) + 1)] + [0.5] * 7,
                                              payload={"text": f"document number {i}", "doc_id": i})
                           for i in range(points)], wait=True)
    proxy.register_and_bind(spec_a, Binding(source, spec_a.id))
    proxy.register_and_bind(spec_b, Binding(source, spec_a.id))  # registers B too
    mid = _admin(proxy, "/migrations", {"logical": alias, "to_model": spec_b.id})["migration"]["id"]
    _admin(proxy, f"/migrations/{mid}/transition", {"name": "start"})
    return mid, direct


def test_page_is_served_with_a_strict_policy(switchyard: RunningProxy) -> None:  # noqa: F811
    with urllib.request.urlopen(switchyard.rest_url + "/switchyard/", timeout=10) as reply:
        body = reply.read().decode()
        policy = reply.headers["Content-Security-Policy"]
    assert "<title>Switchyard</title>" in body and "innerHTML" not in body  # values go in as text
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "connect-src 'self'" in policy


def test_status_page_shows_a_migration_and_its_backfill_advancing(
        switchyard: RunningProxy, upstream: Any, prefix: str) -> None:  # noqa: F811
    others = _planned_migrations(switchyard, upstream, prefix + "page_", 6)
    mid, direct = _seeded_migration(switchyard, upstream, prefix + "page_", 1500)
    # 1,500 points at 40/s (~37 s): the page sees it advance within a few seconds, mid-way
    _admin(switchyard, f"/migrations/{mid}/throttle", {"points_per_second": 40})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot, ready = ARTIFACTS / "status-page.png", ARTIFACTS / "status-page-first.json"
    ready.unlink(missing_ok=True)
    daemon: subprocess.Popen[bytes] | None = None
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        browsing = pool.submit(drive, ROOT / "tests" / "status_page.cjs", {
            "url": switchyard.rest_url + "/switchyard/", "migration": mid, "screenshot": str(shot),
            "advance_ms": 90000, "ready": str(ready)}, 240)
        try:
            # the backfill starts once the page has read its first view (however slow the browser
            # and its install were), so the page must then see the progress advance
            deadline = time.monotonic() + 200
            while not ready.exists() and not browsing.done() and time.monotonic() < deadline:
                time.sleep(0.1)
            daemon = subprocess.Popen([sys.executable, "-m", "switchyard.proxy", "backfill", mid, "--url",
                                       switchyard.rest_url, "--batch-size", "20", "--progress-interval", "0.3"],
                                      cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            seen = browsing.result()
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(20)
            for done in (mid, *others):
                _admin(switchyard, f"/migrations/{done}/transition", {"name": "cancel"})
            direct.close()
    first, later = seen["first"], seen["later"]
    assert seen["errors"] == [], seen["errors"]
    assert first["phase"] == "dual_write" and seen["title"] == "Switchyard"
    def done(view: dict[str, Any]) -> int:
        return int(view["progress"].split(" of ")[0].replace(",", ""))

    assert done(later) > done(first), (first, later)       # it updates live, progress advancing
    assert "of 1,500 points" in later["progress"], later
    assert switchyard.interceptor.config.instance_id in first["proxies"]
    buttons = {b["name"]: b for b in later["buttons"]}
    assert set(buttons) == {"verify", "cancel"}
    assert buttons["verify"]["disabled"] and "verif" in buttons["verify"]["title"]  # refused, with why
    assert not buttons["cancel"]["disabled"]
    assert shot.stat().st_size > 10_000
    (ARTIFACTS / "status-page.json").write_text(json.dumps(seen, indent=2))
