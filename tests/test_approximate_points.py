"""Mirrored upserts without text, through the migration's query adapter (issue 15, adapter use 2).

On the session's real proxy and upstream, a migration from model A (hashing, 8-d) to model B
(hashing, 12-d) in ``dual_write``, with an adapter fitted by ``adapter_store.refit`` from a
sample reservoir (synthetic pairs related by a known rotation, so the fit is usable):

1. an upsert without text lands in the target as the adapter's image of the stored A vector,
   flagged ``embedding_approximate``, with the source digest, and its id in the repair log;
2. verify counts the point as approximate and refuses ``verified`` with the reason; the backfill
   daemon (a real subprocess with a ``--text-fetcher`` that finds one of the two texts elsewhere)
   re-embeds that one; the other stays approximate until its text is on the source, then
   ``verify --repair`` re-embeds it; verify is then clean and the migration ``verified``;
3. without a usable adapter (none, turned off, poor fit) nothing changes: a repair record
   saying there is no text, no target point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)
from switchyard.backfill import samples, verify
from switchyard.proxy.dataplane import adapter_points, adapter_store, repair_log
from switchyard.proxy.dataplane.adapter import Adapter
from switchyard.proxy.dataplane.digest import DIGEST_FIELD, content_of, source_digest
from switchyard.proxy.dataplane.writes import strip_meta
from switchyard.proxy.embedders import make_embedder
from switchyard.proxy.migration.record import Refused
from switchyard.proxy.migration.service import MigrationService, ServiceConfig
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import META_APPROXIMATE
from switchyard.proxy.state.store import StateStore
from test_mirrored_writes import DIM_A, DIM_B, _admin, start_migration

ROOT = Path(__file__).resolve().parents[1]
FOUND_ELSEWHERE = 101  # the point whose text the daemon's fetcher finds


def fetched_texts(keys: list[Any], payloads: list[dict[str, Any]]) -> list[str | None]:
    """The daemon's ``--text-fetcher``: the payload text, else one text kept elsewhere."""
    return [p.get("text") if isinstance(p.get("text"), str) else
            (f"found elsewhere {k}" if str(k) == str(FOUND_ELSEWHERE) else None) for k, p in zip(keys, payloads)]


def _pairs(related: bool, n: int = 160) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    a = rng.normal(size=(n, DIM_A)).astype(np.float32)
    if not related:
        return a, rng.normal(size=(n, DIM_B)).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(DIM_B, DIM_B)))
    return a, (np.pad(a, ((0, 0), (0, DIM_B - DIM_A))) @ q).astype(np.float32)


async def _fit(store: StateStore, mid: str, related: bool = True, enabled: bool = True) -> Adapter | None:
    """A reservoir of (A, B) pairs saved as the backfill saves it, then the stored refit."""
    a, b = _pairs(related)
    r = samples.Reservoir(capacity=400)
    for i in range(len(a)):
        r.offer(samples.pair(i, f"t{i}", a[i], b[i]))
    await samples.save(store, mid, "test-daemon", r)
    await adapter_store.refit(store, mid)
    if not enabled:
        await adapter_store.set_enabled(store, mid, False)
    env = await store.get(adapter_store.KIND, mid)
    loaded = adapter_store.load_record(env.data if env else None)
    return loaded.usable_adapter("target") if loaded else None


async def _embed(spec: ModelSpec, text: str) -> np.ndarray:
    e = make_embedder(spec)
    try:
        return np.asarray((await e.embed([text]))[0], np.float32)
    finally:
        await e.aclose()


def _unit(v: Any) -> np.ndarray:
    x = np.asarray(v, np.float32)
    return x / np.linalg.norm(x)


def _vec(i: int) -> list[float]:
    return [float((i * 3 + k) % 7) / 7 + 0.05 for k in range(DIM_A)]


def _backfill(upstream: Any, mid: str) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"}
    out = subprocess.run([sys.executable, "-m", "switchyard.proxy", "--log-level", "WARNING", "backfill", mid,
                          "--url", upstream.rest_url, "--once", "--owner", "approx-test", "--text-fetcher",
                          "test_approximate_points:fetched_texts"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


async def _refusal(svc: MigrationService, mid: str, repair: bool = False) -> str:
    with pytest.raises(Refused) as info:
        await svc.verify(mid, repair=repair)
    return str(info.value.args[0])  # the reason, without the error-kind prefix


def test_the_flag_is_metadata_not_content() -> None:
    payload = {"n": 1, "embedding_model_id": "b", META_APPROXIMATE: True}
    assert META_APPROXIMATE not in content_of(payload) and META_APPROXIMATE not in strip_meta(payload)
    assert source_digest(payload) == source_digest({"n": 1})


async def test_upsert_without_text_gets_the_adapter_image_until_re_embedded(
        switchyard: RunningProxy, upstream: Any, prefix: str) -> None:  # noqa: F811
    alias, source, target, spec_a, spec_b, direct, mid = start_migration(switchyard, upstream, prefix)
    store = StateStore.connect(upstream.rest_url)
    svc = MigrationService(store, store.client, ServiceConfig(ack_timeout=15.0, max_active=1000))
    try:
        ad = await _fit(store, mid)
        assert ad is not None and ad.fit.mean_cosine > 0.99
        other = FOUND_ELSEWHERE + 1
        with closing(QdrantClient(url=switchyard.rest_url, check_compatibility=False)) as c:
            c.upsert(alias, [models.PointStruct(id=FOUND_ELSEWHERE, vector=_vec(1), payload={"n": 1}),
                             models.PointStruct(id=7, vector=_vec(7), payload={"text": "seven", "n": 7})])
        with closing(QdrantClient(url=switchyard.rest_url, prefer_grpc=True, grpc_port=switchyard.grpc_port,
                                  check_compatibility=False)) as g:
            g.upsert(alias, [models.PointStruct(id=other, vector=_vec(2), payload={"n": 2})])

        # (1) the target holds the adapter's image of the stored A vector, flagged
        src = {p.id: p for p in direct.retrieve(source, [FOUND_ELSEWHERE, other, 7], with_vectors=True)}
        tgt = {p.id: p for p in direct.retrieve(target, [FOUND_ELSEWHERE, other, 7], with_vectors=True)}
        assert sorted(tgt) == [7, FOUND_ELSEWHERE, other]
        for pid in (FOUND_ELSEWHERE, other):
            want = ad.apply(np.asarray(src[pid].vector, np.float32))
            assert np.allclose(_unit(tgt[pid].vector), _unit(want), atol=1e-4), pid
            assert tgt[pid].payload[META_APPROXIMATE] is True and tgt[pid].payload["embedding_model_id"] == spec_b.id
            assert tgt[pid].payload[DIGEST_FIELD] == source_digest(src[pid].payload)
            assert META_APPROXIMATE not in src[pid].payload
        assert META_APPROXIMATE not in tgt[7].payload
        logged = {e.point_id: e.reason for e in await repair_log.pending(store, mid)}
        assert logged == {FOUND_ELSEWHERE: adapter_points.REASON, other: adapter_points.REASON}

        # (2) verify counts them apart and refuses `verified`
        why = await _refusal(svc, mid)
        assert why.startswith("2 points carry approximate vectors (adapter); run the backfill's repair"), why
        status = await svc.status(mid)
        assert status["verify"]["counts"]["approximate"] == 2 and status["verify"]["state"] == "refused"
        assert status["migration"]["phase"] == "dual_write"

        _backfill(upstream, mid)  # the fetcher finds one text elsewhere; the other has none yet
        fixed = direct.retrieve(target, [FOUND_ELSEWHERE], with_vectors=True)[0]
        assert META_APPROXIMATE not in fixed.payload
        real = await _embed(spec_b, f"found elsewhere {FOUND_ELSEWHERE}")
        assert np.allclose(_unit(fixed.vector), _unit(real), atol=1e-5)
        why = await _refusal(svc, mid, repair=True)  # no text anywhere: the repair cannot help
        assert why.startswith("1 points carry approximate vectors") and str(other) in why, why

        direct.set_payload(source, {"text": "two, text at last"}, points=[other], wait=True)  # not mirrored
        m = await svc.verify(mid, repair=True)
        assert m.phase == "verified" and m.verification is not None and m.verification.note == "repaired"
        assert m.verification.counts["approximate"] == 1  # what the run found, then repaired
        again, _ = await verify.run_for_service(store, store.client, m, repair=False)
        assert again.clean and again.counts()["approximate"] == 0
        last = direct.retrieve(target, [other], with_vectors=True)[0]
        assert META_APPROXIMATE not in last.payload and last.payload["text"] == "two, text at last"
        assert np.allclose(_unit(last.vector), _unit(await _embed(spec_b, "two, text at last")), atol=1e-5)
    finally:
        _admin(switchyard, f"/migrations/{mid}/transition", {"name": "cancel"})
        direct.close()
        await store.close()


@pytest.mark.parametrize("adapter", ["none", "off", "poor-fit"])
async def test_without_a_usable_adapter_nothing_changes(switchyard: RunningProxy, upstream: Any,  # noqa: F811
                                                         prefix: str, adapter: str) -> None:
    alias, source, target, spec_a, spec_b, direct, mid = start_migration(switchyard, upstream, prefix)
    store = StateStore.connect(upstream.rest_url)
    try:
        if adapter != "none":
            assert await _fit(store, mid, related=adapter != "poor-fit", enabled=adapter != "off") is None
        with closing(QdrantClient(url=switchyard.rest_url, check_compatibility=False)) as c:
            c.upsert(alias, [models.PointStruct(id=5, vector=_vec(5), payload={"n": 5})])
        assert direct.retrieve(source, [5]) and not direct.retrieve(target, [5])
        logged = {e.point_id: e.reason for e in await repair_log.pending(store, mid)}
        assert logged == {5: f"no text in field `text` to embed with `{spec_b.id}`"}
    finally:
        _admin(switchyard, f"/migrations/{mid}/transition", {"name": "cancel"})
        direct.close()
        await store.close()
