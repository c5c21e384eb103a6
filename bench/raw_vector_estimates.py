"""Merged reads with a raw model-A query vector: can the target side be served without B's
query vector? Two estimates of it that need no adapter fitted on documents alone, measured
against (a) source only and (d) the merged read with both query vectors (issue 15's (e)).

- ``prf-M``: pseudo-relevance feedback. The migrated documents among the source's top ``M``
  hits (A's view of the query) have B vectors; their centroid, weighted by a softmax of the A
  scores (temperature 0.05) or uniformly (``prf-u``), stands in for the B query vector. In a
  proxy this costs no fitted state: the lookup of the source hits in the target already runs,
  and would fetch their vectors.
- ``qpairs-wN``: an A->B map fitted on pairs of *queries* embedded by both models (what merged
  reads of text queries could collect), the other fold of the questions, together with the
  backfill's 256 document pairs, the query pairs repeated ``N`` times; orthogonal Procrustes
  (``p``) or ridge least squares (``r``, lambda 1). No question is mapped by a fit it was in.

Both are merged with the source hits by ``merge.merge``, as (e) is. Uses the embeddings
``bench/migration_quality.py`` caches (run it once first).

    python bench/raw_vector_estimates.py [--seeds 7,1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import migration_quality as mq  # noqa: E402

from switchyard.proxy.dataplane import adapter as adapter_fit  # noqa: E402
from switchyard.proxy.dataplane.merge import Hit, merge  # noqa: E402

PRF_DEPTHS = (10, 20, 40)
QUERY_WEIGHTS = (0, 1, 4)


def ridge(a: np.ndarray, b: np.ndarray, lam: float = 1.0) -> np.ndarray:
    return np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ b)


def prf_vector(anchors: list[tuple[int, float]], b_docs: np.ndarray, softmax: bool) -> np.ndarray:
    idx = np.array([i for i, _ in anchors])
    scores = np.array([s for _, s in anchors])
    weights = np.exp((scores - scores.max()) / 0.05) if softmax else np.ones(len(idx))
    vector = (weights[:, None] * b_docs[idx]).sum(0)
    return vector / np.linalg.norm(vector)


def step(fraction: float, seed: int, data: tuple, folds: list[np.ndarray]) -> dict[str, float]:
    doc_ids, a_docs, b_docs, a_q, b_q, qids, qrels = data
    n = len(doc_ids)
    migrated = np.zeros(n, dtype=bool)
    migrated[np.random.default_rng(seed).permutation(n)[: int(round(fraction * n))]] = True
    migrated_keys = {doc_ids[i] for i in np.flatnonzero(migrated)}
    everything = np.ones(n, dtype=bool)
    reservoir = np.random.default_rng(seed + 1000).permutation(np.flatnonzero(migrated))[:256]
    maps: dict[tuple[int, int, str], np.ndarray] = {}
    for f in (0, 1):
        other = folds[1 - f]
        for w in QUERY_WEIGHTS:
            a = np.vstack([a_docs[reservoir]] + [a_q[other]] * w)
            b = np.vstack([b_docs[reservoir]] + [b_q[other]] * w)
            if len(a) >= 8:
                maps[(f, w, "p")], maps[(f, w, "r")] = adapter_fit.procrustes(a, b), ridge(a, b)
    fold_of = np.zeros(len(qids), dtype=int)
    fold_of[folds[1]] = 1

    def merged(tgt: list[tuple[int, float]], src: list[tuple[int, float]]) -> list[str]:
        page, _ = merge([Hit(doc_ids[i], s, side="target") for i, s in tgt],
                        [Hit(doc_ids[i], s, side="source") for i, s in src],
                        in_target=[doc_ids[i] for i, _ in src if doc_ids[i] in migrated_keys],
                        limit=mq.K, coverage=None)
        return [h.key for h in page]

    sums: dict[str, float] = {}
    cosines: dict[str, list[float]] = {}  # the map's image against the real B query (held out)
    for qi, qid in enumerate(qids):
        src = mq.top_k(a_docs, a_q[qi], everything, mq.K)
        source_only = [doc_ids[i] for i, _ in src]
        cells = {"(a) source only": source_only,
                 "(d) merged, B query": merged(mq.top_k(b_docs, b_q[qi], migrated, mq.K), src)}
        for depth in PRF_DEPTHS:
            anchors = [(i, s) for i, s in mq.top_k(a_docs, a_q[qi], everything, depth) if migrated[i]]
            for tag, soft in (("s", True), ("u", False)):
                cells[f"prf-{tag}{depth}"] = (merged(mq.top_k(b_docs, prf_vector(anchors, b_docs, soft),
                                                              migrated, mq.K), src) if anchors else source_only)
        for w in QUERY_WEIGHTS:
            for kind in "pr":
                m = maps.get((int(fold_of[qi]), w, kind))
                if m is None:
                    cells[f"qpairs-{kind}w{w}"] = source_only
                    continue
                image = a_q[qi] @ m
                image = image / np.linalg.norm(image)
                cosines.setdefault(f"qpairs-{kind}w{w} cosine", []).append(float(image @ b_q[qi]))
                cells[f"qpairs-{kind}w{w}"] = merged(mq.top_k(b_docs, image, migrated, mq.K), src)
        for name, ranked in cells.items():
            sums[name] = sums.get(name, 0.0) + mq.ndcg_recall(ranked, qrels[qid])[0]
    out = {name: total / len(qids) for name, total in sums.items()}
    out.update({name: float(np.mean(values)) for name, values in cosines.items()})
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=mq.DEFAULT_DATA)
    parser.add_argument("--seeds", default="7,1")
    args = parser.parse_args()
    doc_ids, doc_texts, qids, qtexts, qrels = mq.load(args.data)
    keep = [i for i, q in enumerate(qids) if q in qrels]
    a_docs = await mq.embed_cached(mq.MODEL_A, doc_texts, "docs")
    b_docs = await mq.embed_cached(mq.MODEL_B, doc_texts, "docs")
    a_q = (await mq.embed_cached(mq.MODEL_A, qtexts, "faq"))[keep]
    b_q = (await mq.embed_cached(mq.MODEL_B, qtexts, "faq"))[keep]
    data = (doc_ids, a_docs, b_docs, a_q, b_q, [qids[i] for i in keep], qrels)
    for seed in (int(s) for s in args.seeds.split(",")):
        folds = np.array_split(np.random.default_rng(seed + 2000).permutation(len(keep)), 2)
        rows = {fraction: step(fraction, seed, data, folds) for fraction in mq.FRACTIONS}
        names = list(rows[mq.FRACTIONS[-1]])
        print(f"\n{args.data.name}, seed {seed}: nDCG@10 (rows: estimate; columns: migrated share); "
              "'cosine' rows: the map's image of a held-out question against its real B vector\n")
        print("| estimate | " + " | ".join(f"{f:.0%}" for f in mq.FRACTIONS) + " |")
        print("| --- |" + " ---: |" * len(mq.FRACTIONS))
        for name in names:
            print(f"| {name} | " + " | ".join(f"{rows[f][name]:.3f}" if name in rows[f] else "-"
                                              for f in mq.FRACTIONS) + " |")


if __name__ == "__main__":
    asyncio.run(main())
