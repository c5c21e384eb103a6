"""Retrieval quality during a migration: why merged reads matter.

Data: ``shared/datasets/pydocs-faq`` (3,185 documents, 171 real questions, one relevant section
each). Model A (source) is paraphrase-MiniLM-L3-v2, model B (target) all-MiniLM-L6-v2 int8: both
384-d, unrelated spaces, B clearly better. At 0/25/50/75/100 % of documents migrated (a seeded
random subset), each question is answered four ways, k = 10, exact cosine search:

  (a) source only      the A collection (all documents), A query vector
  (b) target only      the B collection as it stands (only migrated documents), B query vector
  (c) naive mixed      one collection, migrated documents re-embedded in place with B, others A;
                       queries with B (what you get without Switchyard)
  (d) switchyard       merged read: target hits + source hits, documents present in the target
                       ranked only by their target version, source-only hits placed by rank
                       (``switchyard.proxy.dataplane.merge.merge``, the function the proxy uses)

  (e) adapter          as (d), but the client sends a raw model-A query vector: the target is
                       searched with the adapter's image of it (``dataplane.adapter``, fitted on
                       the backfill's sample reservoir: pairs of migrated documents' vectors)
  (f) calibrated       as (d), source-only hits placed by the isotonic score calibration fitted
                       on document-document score pairs of the same reservoir
                       (``dataplane.calibration``), applied whatever its fit (the proxy's gate,
                       ``calibration.MIN_SPEARMAN``, decides whether the proxy uses it; the notes
                       under each table say what it decided)
  (g) query-calibrated as (f), fitted instead on query-document pairs as merged reads see them:
                       each question's top-20 source hits that are already migrated, with their
                       model-B scores; two folds of the questions, each scored with the
                       calibration fitted on the other fold (no question calibrates itself)

Queries are embedded from text with each model, as the proxy does for inference objects.
Relevance is graded and several documents per query count (``qrels.tsv``'s score column):
nDCG@10 against the ideal ranking of all of a query's relevant documents, Recall@10 the share
of them found. ``--seeds 7,1`` runs each seed and prints one table per seed.
With ``--through-proxy`` column (d) is measured end to end instead: the embedded upstream and a
real proxy run in this process, a migration in ``dual_write`` with read mode ``merged`` is
created through the admin API, the target holds the migrated share, and every question is sent
to the proxy as an inference object (``{"text": ..., "model": "l6"}``) so the proxy embeds it
for both sides, fans out, looks the source hits up in the target and merges.
Embeddings are cached under ``~/.cache/switchyard-bench`` (keyed by model and data hash), so
re-runs take seconds. Prints a Markdown table with nDCG@10 and Recall@10.

    python bench/migration_quality.py [--data DIR] [--seed 7 | --seeds 7,1] [--pairs 256] [--queries faq|titles]
    python bench/migration_quality.py --kind named-vector [--seed 7]   (in place: bench/in_place_quality.py)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from switchyard.proxy.dataplane import adapter as adapter_fit
from switchyard.proxy.dataplane import calibration as calibration_fit
from switchyard.proxy.dataplane.merge import Hit, merge
from switchyard.proxy.embedders import make_embedder
from switchyard.proxy.modelspec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "pydocs-faq"
MODEL_A = ModelSpec(id="l3", provider="local", model="pkg:paraphrase-MiniLM-L3-v2", dimensions=384)
MODEL_B = ModelSpec(id="l6", provider="local", model="pkg:all-MiniLM-L6-v2-int8", dimensions=384)
K = 10
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
METHODS = "abcdefg"


Qrels = dict[str, dict[str, float]]  # query id -> {relevant doc id: grade}


def load(data: Path) -> tuple[list[str], list[str], list[str], list[str], Qrels]:
    """BEIR layout; every relevant document of a query is kept, with its grade (score > 0)."""
    docs = [json.loads(line) for line in (data / "corpus.jsonl").open()]
    queries = [json.loads(line) for line in (data / "queries.jsonl").open()]
    qrels: Qrels = {}
    for line in (data / "qrels.tsv").open():
        qid, did, *rest = line.rstrip("\n").split("\t")
        if qid == "query-id":
            continue
        grade = float(rest[0]) if rest and rest[0].strip() else 1.0
        if grade > 0:
            qrels.setdefault(qid, {})[did] = grade
    doc_texts = [f"{d.get('title', '')}\n{d['text']}".strip() for d in docs]
    return [d["_id"] for d in docs], doc_texts, [q["_id"] for q in queries], [q["text"] for q in queries], qrels


def title_queries(data: Path, n: int = 400, seed: int = 5) -> tuple[list[str], list[str], Qrels]:
    """A second task on the same corpus (``--queries titles``): ``n`` section titles that occur
    once, each a query whose one relevant document is its section (a known-item search with
    short keyword queries, where the FAQ task has long questions). The title is part of the
    document's embedded text, so this task rewards lexical closeness; on it model A is the
    better model, which tests that a merge degrades gracefully when the new model is worse."""
    docs = [json.loads(line) for line in (data / "corpus.jsonl").open()]
    counts: dict[str, int] = {}
    for d in docs:
        counts[d.get("title", "")] = counts.get(d.get("title", ""), 0) + 1
    unique = [d for d in docs if d.get("title") and counts[d["title"]] == 1]
    picked = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))[:n]]
    qids = [f"title:{d['_id']}" for d in picked]
    return qids, [d["title"] for d in picked], {q: {d["_id"]: 1.0} for q, d in zip(qids, picked)}


async def embed_cached(spec: ModelSpec, texts: list[str], label: str) -> np.ndarray:
    digest = hashlib.sha256(("\x00".join(texts) + spec.model).encode()).hexdigest()[:16]
    cache = Path.home() / ".cache" / "switchyard-bench" / f"{spec.id}-{label}-{digest}.npy"
    if cache.exists():
        return np.load(cache)
    embedder = make_embedder(spec)
    started = time.perf_counter()
    try:
        vectors = np.asarray(await embedder.embed(texts), dtype=np.float32)
    finally:
        await embedder.aclose()
    took = time.perf_counter() - started
    print(f"embedded {len(texts)} {label} with {spec.id} in {took:.1f}s ({len(texts) / took:.0f}/s)",
          file=sys.stderr)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def top_k(doc_vecs: np.ndarray, query: np.ndarray, allowed: np.ndarray, k: int) -> list[tuple[int, float]]:
    scores = doc_vecs @ query
    scores = np.where(allowed, scores, -np.inf)
    idx = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
    idx = idx[np.argsort(-scores[idx])]
    return [(int(i), float(scores[i])) for i in idx if np.isfinite(scores[i])]


def ndcg_recall(ranked: list[str], relevant: str | dict[str, float]) -> tuple[float, float]:
    """Graded nDCG@K against the ideal ranking of every relevant document, and Recall@K (share
    of the relevant documents in the top K)."""
    judged = {relevant: 1.0} if isinstance(relevant, str) else relevant
    dcg = sum(judged.get(did, 0.0) / math.log2(rank + 2) for rank, did in enumerate(ranked[:K]))
    ideal = sorted(judged.values(), reverse=True)[:K]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    found = len(set(ranked[:K]) & set(judged))
    return (dcg / idcg if idcg else 0.0), found / len(judged)


def fit_side_models(migrated: np.ndarray, a_docs: np.ndarray, b_docs: np.ndarray, pairs: int,
                    seed: int) -> tuple[Any, Any]:
    """The adapter and calibration the proxy would have: fitted on a reservoir of ``pairs``
    migrated documents (both models' vectors), as the backfill keeps it. ``None`` where there
    are too few pairs."""
    idx = np.flatnonzero(migrated)
    sample = np.random.default_rng(seed + 1000).permutation(idx)[:pairs]
    a, b = a_docs[sample], b_docs[sample]
    adapter = adapter_fit.fit(a, b, seed=seed) if len(sample) >= adapter_fit.MIN_PAIRS else None
    calibration = None
    if len(sample) >= 2:
        s, t = calibration_fit.score_pairs(a, b, 20000, seed=seed)
        if len(s) >= calibration_fit.MIN_PAIRS:
            calibration = calibration_fit.fit(s, t, seed=seed)
    return adapter, calibration


def query_doc_calibrations(migrated: np.ndarray, a_docs: np.ndarray, b_docs: np.ndarray, a_q: np.ndarray,
                           b_q: np.ndarray, seed: int) -> tuple[list[Any], list[float]]:
    """Per question, the calibration fitted on the other fold's query-document score pairs
    (``None`` where too few pairs), and the folds' held-out Spearman."""
    nq, everything = len(a_q), np.ones(len(a_docs), dtype=bool)
    folds = np.array_split(np.random.default_rng(seed + 2000).permutation(nq), 2)
    out: list[Any] = [None] * nq
    rhos: list[float] = []
    for f, fold in enumerate(folds):
        xs: list[float] = []
        ys: list[float] = []
        for qi in folds[1 - f]:
            for i, s in top_k(a_docs, a_q[qi], everything, 2 * K):
                if migrated[i]:
                    xs.append(s)
                    ys.append(float(b_docs[i] @ b_q[qi]))
        cal = calibration_fit.fit(xs, ys, seed=seed) if len(xs) >= calibration_fit.MIN_PAIRS else None
        if cal is not None:
            rhos.append(cal.spearman)
        for qi in fold:
            out[qi] = cal
    return out, rhos


def apply_cost(adapter: Any, calibration: Any, query: np.ndarray, rounds: int = 2000) -> tuple[float, float]:
    """Microseconds per query to map a query vector, and to calibrate 20 source hits."""
    started = time.perf_counter()
    for _ in range(rounds):
        adapter.apply(query)
    per_map = (time.perf_counter() - started) / rounds * 1e6
    scores = [0.5 + i / 100 for i in range(20)]
    started = time.perf_counter()
    for _ in range(rounds):
        for x in scores:
            calibration.to_target(x)
    return per_map, (time.perf_counter() - started) / rounds * 1e6


def evaluate(fraction: float, coverage: float | None, seed: int, doc_ids: list[str], a_docs: np.ndarray, b_docs: np.ndarray,
             a_q: np.ndarray, b_q: np.ndarray, qids: list[str], qrels: Qrels,
             pairs: int = 256, notes: dict[float, str] | None = None) -> dict[str, tuple[float, float]]:
    n = len(doc_ids)
    rng = np.random.default_rng(seed)
    migrated = np.zeros(n, dtype=bool)
    migrated[rng.permutation(n)[: int(round(fraction * n))]] = True
    everything = np.ones(n, dtype=bool)
    mixed = np.where(migrated[:, None], b_docs, a_docs)
    migrated_keys = {doc_ids[i] for i in np.flatnonzero(migrated)}
    adapter, calibration = fit_side_models(migrated, a_docs, b_docs, pairs, seed)
    per_query, rhos = query_doc_calibrations(migrated, a_docs, b_docs, a_q, b_q, seed)
    if notes is not None:
        notes[fraction] = (f"adapter {adapter.kind} held-out cosine {adapter.fit.mean_cosine:.2f}" if adapter
                           else "no adapter (too few pairs)") + "; (f) " + (
            calibration.reason if calibration is not None else "no calibration (too few pairs)") + (
            "; (g) held-out Spearman " + ", ".join(f"{r:.2f}" for r in rhos) if rhos else "; (g) too few pairs")
    sums: dict[str, list[float]] = {m: [0.0, 0.0] for m in METHODS}

    def merged(tgt: list[tuple[int, float]], src: list[tuple[int, float]], cal: Any = None) -> list[str]:
        page, _ = merge(
            [Hit(doc_ids[i], s, side="target") for i, s in tgt],
            [Hit(doc_ids[i], s, side="source") for i, s in src],
            in_target=[doc_ids[i] for i, _ in src if doc_ids[i] in migrated_keys],
            limit=K,
            coverage=coverage,
            calibration=cal,
        )
        return [h.key for h in page]

    for qi, qid in enumerate(qids):
        relevant = qrels[qid]
        src = top_k(a_docs, a_q[qi], everything, K)
        tgt = top_k(b_docs, b_q[qi], migrated, K)
        naive = top_k(mixed, b_q[qi], everything, K)
        # (e): no model-B query vector; the target is searched with the adapter's image of A's
        tgt_e = top_k(b_docs, adapter.apply(a_q[qi]), migrated, K) if adapter is not None else []
        for method, ranked in (("a", [doc_ids[i] for i, _ in src]), ("b", [doc_ids[i] for i, _ in tgt]),
                               ("c", [doc_ids[i] for i, _ in naive]), ("d", merged(tgt, src)),
                               ("e", merged(tgt_e, src)), ("f", merged(tgt, src, calibration)),
                               ("g", merged(tgt, src, per_query[qi]))):
            nd, rc = ndcg_recall(ranked, relevant)
            sums[method][0] += nd
            sums[method][1] += rc
    return {m: (v[0] / len(qids), v[1] / len(qids)) for m, v in sums.items()}


async def through_proxy(doc_ids: list[str], doc_texts: list[str], a_docs: np.ndarray, b_docs: np.ndarray,
                        qtexts: list[str], qids: list[str], qrels: Qrels,
                        seed: int) -> dict[float, tuple[float, float]]:
    """nDCG@10 / Recall@10 of merged reads served by a real proxy, per migrated fraction."""
    from switchyard.proxy.app import ProxyServer
    from switchyard.proxy.config import load_config
    from switchyard.proxy.embedded.server import EmbeddedUpstream
    from switchyard.proxy.interception import build_interceptor
    from switchyard.proxy.registry import bind, register_model
    from switchyard.proxy.state.records import Binding
    from switchyard.proxy.state.store import StateStore
    from switchyard.proxy.upstream.rest_client import RestUpstream
    from switchyard.proxy.wire import RestCall

    upstream = EmbeddedUpstream()
    await upstream.start()
    config = load_config({"upstream_rest_url": upstream.rest_url, "upstream_grpc_address": upstream.grpc_address,
                          "listen_rest": "127.0.0.1:0", "listen_grpc": "127.0.0.1:0",
                          "state_cache_ttl": "0.2", "heartbeat_interval": "0.3"}, {}, None)
    server = ProxyServer(config, build_interceptor(config), drain_seconds=1)
    await server.start()
    direct, proxy = RestUpstream(upstream.rest_url), RestUpstream(f"http://127.0.0.1:{server.rest_port}")
    json_h = (("content-type", "application/json"),)

    async def call(up: RestUpstream, method: str, path: str, body: Any) -> Any:
        reply = await up.request(RestCall(method, path, "", json_h, orjson.dumps(body)))
        if not reply.ok:
            raise SystemExit(f"{method} {path}: {reply.status} {reply.body[:300]!r}")
        return orjson.loads(reply.body)

    async def put_points(collection: str, idx: list[int], vecs: np.ndarray) -> None:
        for start in range(0, len(idx), 512):
            chunk = idx[start:start + 512]
            await call(direct, "PUT", f"/collections/{collection}/points?wait=true", {"points": [
                {"id": i, "vector": vecs[i].tolist(), "payload": {"doc_id": doc_ids[i], "text": doc_texts[i]}}
                for i in chunk]})

    store = StateStore.connect(upstream.rest_url)
    try:
        await call(direct, "PUT", "/collections/faq_v1", {"vectors": {"size": 384, "distance": "Cosine"}})
        await call(direct, "POST", "/collections/aliases", {"actions": [
            {"create_alias": {"collection_name": "faq_v1", "alias_name": "faq"}}]})
        await put_points("faq_v1", list(range(len(doc_ids))), a_docs)
        for spec in (MODEL_A, MODEL_B):
            await register_model(store, spec)
        await bind(store, store.client, Binding("faq_v1", MODEL_A.id))
        planned = await call(proxy, "POST", "/switchyard/v1/migrations", {"logical": "faq", "to_model": MODEL_B.id})
        mid, target = planned["result"]["migration"]["id"], planned["result"]["migration"]["target"]
        await call(proxy, "POST", f"/switchyard/v1/migrations/{mid}/transition", {"name": "start"})
        await call(proxy, "POST", f"/switchyard/v1/migrations/{mid}/read-mode", {"mode": "merged"})
        out: dict[float, tuple[float, float]] = {}
        n = len(doc_ids)
        for fraction in FRACTIONS:
            order = np.random.default_rng(seed).permutation(n)[: int(round(fraction * n))]
            await call(direct, "POST", f"/collections/{target}/points/delete?wait=true", {"filter": {}})
            if len(order):
                await put_points(target, sorted(int(i) for i in order), b_docs)
            nd = rc = 0.0
            for qid, text in zip(qids, qtexts):
                res = await call(proxy, "POST", "/collections/faq/points/query", {
                    "query": {"text": text, "model": MODEL_B.id}, "limit": K, "with_payload": ["doc_id"]})
                ranked = [p["payload"]["doc_id"] for p in res["result"]["points"]]
                a, b = ndcg_recall(ranked, qrels[qid])
                nd, rc = nd + a, rc + b
            out[fraction] = (nd / len(qids), rc / len(qids))
            print(f"  through the proxy, {fraction:.0%} migrated: nDCG@10 {out[fraction][0]:.3f}", file=sys.stderr)
        return out
    finally:
        await store.close()
        await direct.close()
        await proxy.close()
        await server.stop()
        await upstream.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, one table each (overrides --seed)")
    parser.add_argument("--pairs", type=int, default=256,
                        help="reservoir size the adapter and calibration are fitted on (the backfill's default)")
    parser.add_argument("--through-proxy", action="store_true",
                        help="measure (d) end to end through a real proxy and the embedded upstream")
    parser.add_argument("--known-coverage", action="store_true",
                        help="give the merge the migrated share (as the backfill's progress would) "
                             "instead of estimating it per query")
    parser.add_argument("--queries", choices=("faq", "titles"), default="faq",
                        help="titles: 400 unique section titles as known-item queries (title_queries)")
    parser.add_argument("--kind", choices=("reembed", "named-vector"), default="reembed",
                        help="named-vector: in-place merged reads through a real proxy, and the "
                             "storage of each kind at 100 %% (bench/in_place_quality.py)")
    args = parser.parse_args()
    if args.kind == "named-vector":
        from in_place_quality import run

        await run(args)
        return
    doc_ids, doc_texts, qids, qtexts, qrels = load(args.data)
    if args.queries == "titles":
        qids, qtexts, qrels = title_queries(args.data)
    qids_kept = [q for q in qids if q in qrels]
    a_docs = await embed_cached(MODEL_A, doc_texts, "docs")
    b_docs = await embed_cached(MODEL_B, doc_texts, "docs")
    a_q = await embed_cached(MODEL_A, qtexts, args.queries)
    b_q = await embed_cached(MODEL_B, qtexts, args.queries)
    keep = [i for i, q in enumerate(qids) if q in qrels]
    a_q, b_q = a_q[keep], b_q[keep]
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    relevant = sum(len(qrels[q]) for q in qids_kept)
    for seed in seeds:
        print(f"{args.data.name} ({args.queries} queries): {len(doc_ids)} documents, {len(qids_kept)} queries ({relevant} relevant "
              f"documents); A={MODEL_A.model}, B={MODEL_B.model}; k={K}; seed={seed}; "
              f"reservoir {args.pairs} pairs\n")
        proxied = await through_proxy(doc_ids, doc_texts, a_docs, b_docs, [qtexts[i] for i in keep],
                                      qids_kept, qrels, seed) if args.through_proxy else {}
        if proxied:
            print("(d) measured end to end through the proxy (inference-object queries)\n")
        print("| migrated | (a) source only | (b) target only | (c) naive mixed | (d) switchyard merged "
              "| (e) raw A vector + adapter | (f) calibrated merge | (g) query-doc calibrated merge |")
        print("| ---: | --- | --- | --- | --- | --- | --- | --- |")
        notes: dict[float, str] = {}
        for fraction in FRACTIONS:
            r = evaluate(fraction, fraction if args.known_coverage else None, seed, doc_ids, a_docs, b_docs,
                         a_q, b_q, qids_kept, qrels, args.pairs, notes)
            if proxied:
                r["d"] = proxied[fraction]
            cells = " | ".join(f"{r[m][0]:.3f} / {r[m][1]:.3f}" for m in METHODS)
            print(f"| {fraction:.0%} | {cells} |")
        print("\ncells: nDCG@10 / Recall@10")
        for fraction, note in notes.items():
            print(f"  {fraction:.0%}: {note}")
        print()
    adapter, calibration = fit_side_models(np.ones(len(doc_ids), bool), a_docs, b_docs, args.pairs, seeds[0])
    per_map, per_cal = apply_cost(adapter, calibration, a_q[0])
    print(f"cost: adapter {per_map:.1f} us per query ({adapter.dims_in} -> {adapter.dims_out} dims, {adapter.kind}); "
          f"calibrating 20 source hits {per_cal:.1f} us per query")


if __name__ == "__main__":
    asyncio.run(main())
