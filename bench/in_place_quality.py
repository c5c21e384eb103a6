"""``bench/migration_quality.py --kind named-vector``: retrieval quality of in-place merged
reads, and the storage each kind uses at 100 %.

Same data, models, fractions and measures as ``migration_quality.py`` (pydocs-faq, A = L3,
B = L6 int8, nDCG@10 / Recall@10 over graded qrels). One collection holds every document with
A's vector ``a``; a real proxy and the embedded upstream run in this process, an in-place
migration (``--kind named-vector --vector b``) is planned, started and put in read mode
``merged`` through the admin API. At each migrated share the seeded subset of documents gets
B's vector ``b`` (the rest have none), and every question is sent to the proxy as an inference
object naming B, so the proxy embeds it with both models, asks the collection for the points
having ``b`` ranked by ``b`` and the others ranked by ``a`` (``in_place_reads``), and merges.

Columns: (a) source only (A over every document), (b) target only (B over the migrated ones),
(d) in place, through the proxy. Targets: (d) >= (a) at every share, (d) == (b) at 100 %.

Storage at 100 %: points, stored vectors (and their float32 bytes) and payload bytes, summed
from a scroll of the collections each kind leaves: ``reembed`` (source + target with the
backfill's payload: content, B's metadata, the source digest), ``named-vector`` before cleanup
(one collection, both vectors) and after cleanup (the old vector deleted).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import orjson

from migration_quality import (
    DEFAULT_DATA, FRACTIONS, K, MODEL_A, MODEL_B, embed_cached, load, ndcg_recall, top_k,
)


async def run(args: argparse.Namespace) -> None:
    from switchyard.proxy.app import ProxyServer
    from switchyard.proxy.config import load_config
    from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest
    from switchyard.proxy.embedded.server import EmbeddedUpstream
    from switchyard.proxy.intercept.planner import metadata_for
    from switchyard.proxy.interception import build_interceptor
    from switchyard.proxy.registry import bind, register_model
    from switchyard.proxy.state.records import Binding
    from switchyard.proxy.state.store import StateStore
    from switchyard.proxy.upstream.rest_client import RestUpstream
    from switchyard.proxy.wire import RestCall

    data = args.data or DEFAULT_DATA
    doc_ids, doc_texts, qids, qtexts, qrels = load(data)
    keep = [i for i, q in enumerate(qids) if q in qrels]
    a_docs = await embed_cached(MODEL_A, doc_texts, "docs")
    b_docs = await embed_cached(MODEL_B, doc_texts, "docs")
    a_q = (await embed_cached(MODEL_A, qtexts, "queries"))[keep]
    b_q = (await embed_cached(MODEL_B, qtexts, "queries"))[keep]
    qids, qtexts = [qids[i] for i in keep], [qtexts[i] for i in keep]
    n = len(doc_ids)

    upstream = EmbeddedUpstream()
    await upstream.start()
    config = load_config({"upstream_rest_url": upstream.rest_url, "upstream_grpc_address": upstream.grpc_address,
                          "listen_rest": "127.0.0.1:0", "listen_grpc": "127.0.0.1:0",
                          "state_cache_ttl": "0.2", "heartbeat_interval": "0.3"}, {}, None)
    server = ProxyServer(config, build_interceptor(config), drain_seconds=1)
    await server.start()
    direct, proxy = RestUpstream(upstream.rest_url), RestUpstream(f"http://127.0.0.1:{server.rest_port}")
    json_h = (("content-type", "application/json"),)

    async def call(up: RestUpstream, method: str, path: str, body: Any = None) -> Any:
        raw = b"" if body is None else orjson.dumps(body)
        reply = await up.request(RestCall(method, path, "", json_h, raw))
        if not reply.ok:
            raise SystemExit(f"{method} {path}: {reply.status} {reply.body[:300]!r}")
        return orjson.loads(reply.body)

    def payload(i: int) -> dict[str, Any]:
        return {"doc_id": doc_ids[i], "text": doc_texts[i]}

    async def put(collection: str, vectors: dict[str, np.ndarray], extra: Any = None) -> None:
        for start in range(0, n, 512):
            await call(direct, "PUT", f"/collections/{collection}/points?wait=true", {"points": [
                {"id": i, "vector": {k: v[i].tolist() for k, v in vectors.items()},
                 "payload": extra(i) if extra else payload(i)} for i in range(start, min(n, start + 512))]})

    store = StateStore.connect(upstream.rest_url)
    try:
        await call(direct, "PUT", "/collections/faq_v1", {"vectors": {"a": {"size": 384, "distance": "Cosine"}}})
        await call(direct, "POST", "/collections/aliases", {"actions": [
            {"create_alias": {"collection_name": "faq_v1", "alias_name": "faq"}}]})
        await put("faq_v1", {"a": a_docs})
        for spec in (MODEL_A, MODEL_B):
            await register_model(store, spec)
        await bind(store, store.client, Binding("faq_v1", MODEL_A.id, vector="a"))
        planned = await call(proxy, "POST", "/switchyard/v1/migrations", {
            "logical": "faq", "to_model": MODEL_B.id, "kind": "named-vector", "options": {"vector": "b"}})
        mid = planned["result"]["migration"]["id"]
        await call(proxy, "POST", f"/switchyard/v1/migrations/{mid}/transition", {"name": "start"})
        await call(proxy, "POST", f"/switchyard/v1/migrations/{mid}/read-mode", {"mode": "merged"})
        print(f"{data.name}: {n} documents, {len(qids)} queries; A={MODEL_A.model}, B={MODEL_B.model}; "
              f"k={K}; seed={args.seed}; in place (named-vector), (d) through the proxy\n")
        print("| migrated | (a) source only | (b) target only | (d) in place merged | (d) >= (a) |")
        print("| ---: | --- | --- | --- | --- |")
        everything = np.ones(n, dtype=bool)
        for fraction in FRACTIONS:
            order = np.random.default_rng(args.seed).permutation(n)[: int(round(fraction * n))]
            migrated = np.zeros(n, dtype=bool)
            migrated[order] = True
            await call(direct, "POST", "/collections/faq_v1/points/vectors/delete?wait=true",
                       {"filter": {}, "vector": ["b"]})
            idx = sorted(int(i) for i in order)
            for start in range(0, len(idx), 512):
                await call(direct, "PUT", "/collections/faq_v1/points/vectors?wait=true", {"points": [
                    {"id": i, "vector": {"b": b_docs[i].tolist()}} for i in idx[start:start + 512]]})
            sums = {m: [0.0, 0.0] for m in "abd"}
            for qi, (qid, text) in enumerate(zip(qids, qtexts)):
                res = await call(proxy, "POST", "/collections/faq/points/query", {
                    "query": {"text": text, "model": MODEL_B.id}, "limit": K, "with_payload": ["doc_id"]})
                ranked = {"d": [p["payload"]["doc_id"] for p in res["result"]["points"]],
                          "a": [doc_ids[i] for i, _ in top_k(a_docs, a_q[qi], everything, K)],
                          "b": [doc_ids[i] for i, _ in top_k(b_docs, b_q[qi], migrated, K)]}
                for m, r in ranked.items():
                    nd, rc = ndcg_recall(r, qrels[qid])
                    sums[m][0] += nd
                    sums[m][1] += rc
            r = {m: (v[0] / len(qids), v[1] / len(qids)) for m, v in sums.items()}
            ok = "yes" if r["d"][0] >= r["a"][0] - 1e-9 else "NO"
            cells = " | ".join(f"{r[m][0]:.3f} / {r[m][1]:.3f}" for m in "abd")
            print(f"| {fraction:.0%} | {cells} | {ok} |")
        print("\ncells: nDCG@10 / Recall@10\n")

        # storage at 100 %: faq_v1 now holds both vectors for every document
        meta_b = metadata_for(MODEL_B)
        await call(direct, "PUT", "/collections/faq_reembed", {"vectors": {"a": {"size": 384, "distance": "Cosine"}}})
        await put("faq_reembed", {"a": b_docs}, lambda i: {**payload(i), **meta_b,
                                                           DIGEST_FIELD: source_digest(payload(i))})
        rows = [("reembed (source + target)", await storage(call, direct, ["faq_v1", "faq_reembed"], ("a",))),
                ("named-vector, before cleanup", await storage(call, direct, ["faq_v1"], ("a", "b")))]
        await call(direct, "DELETE", "/collections/faq_v1/vectors/a?wait=true")  # what cleanup does
        rows.append(("named-vector, after cleanup", await storage(call, direct, ["faq_v1"], ("b",))))
        print("| storage at 100 % | points | vectors | vector bytes (float32) | payload bytes |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for label, (points, vectors, vbytes, pbytes) in rows:
            print(f"| {label} | {points} | {vectors} | {vbytes} | {pbytes} |")
        print("\n(the reembed source row counts faq_v1's A vectors only; payload bytes are the "
              "JSON of every stored payload, Switchyard's fields included)")
    finally:
        await store.close()
        await direct.close()
        await proxy.close()
        await server.stop()
        await upstream.stop()


async def storage(call: Any, direct: Any, collections: list[str], names: tuple[str, ...]) -> tuple[int, int, int, int]:
    """(points, stored vectors among ``names``, their float32 bytes, payload JSON bytes)."""
    points = vectors = vbytes = pbytes = 0
    for c in collections:
        offset: Any = None
        while True:
            body: dict[str, Any] = {"limit": 1000, "with_payload": True, "with_vector": list(names)}
            if offset is not None:
                body["offset"] = offset
            res = (await call(direct, "POST", f"/collections/{c}/points/scroll", body))["result"]
            for p in res["points"]:
                points += 1
                pbytes += len(orjson.dumps(p.get("payload") or {}))
                for v in (p.get("vector") or {}).values():
                    vectors += 1
                    vbytes += 4 * len(v)
            offset = res.get("next_page_offset")
            if offset is None:
                break
    return points, vectors, vbytes, pbytes


if __name__ == "__main__":
    print("run as: python bench/migration_quality.py --kind named-vector", file=sys.stderr)
