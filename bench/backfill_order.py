"""Backfill order: hot documents first (``--order hot``) against id order (``--order id``).

A query log of the data set's questions drawn with Zipf frequencies (exponent ``--zipf``,
question popularity in a seeded random order), split in two: the first half is replayed while
nothing is migrated, and the proxy's heavy-hitters sketch (``dataplane.hot_docs``, the class
the proxy uses, default capacity) counts the point ids the merged reads return (top 10 each);
``hot_docs.backfill_order`` turns the counts into the hot list. Then, after each 10 % of the
backfill in either order (hot ids first, then id order; or id order alone), the second half of
the log is answered with merged reads (``merge.merge``, as column (d) of
``migration_quality.py``) and scored by nDCG@10, each query weighted by its frequency in that
half. The area under each quality curve (trapezoid over the migrated share, 0..1) sums it up.

    python bench/backfill_order.py [--data DIR] [--seeds 7,1] [--log 4000] [--zipf 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from migration_quality import (  # noqa: E402 - the bench's own loader and embeddings
    DEFAULT_DATA, K, MODEL_A, MODEL_B, Qrels, embed_cached, load, ndcg_recall, top_k,
)

from switchyard.proxy.dataplane.hot_docs import HeavyHitters, backfill_order  # noqa: E402
from switchyard.proxy.dataplane.merge import Hit, merge  # noqa: E402

STEPS = 10


def zipf_log(n_queries: int, length: int, exponent: float, seed: int) -> list[int]:
    """``length`` query indices; the r-th most popular question has weight ``1 / r**exponent``."""
    rng = np.random.default_rng(seed)
    popularity = rng.permutation(n_queries)
    weights = 1.0 / np.arange(1, n_queries + 1) ** exponent
    draws = rng.choice(n_queries, size=length, p=weights / weights.sum())
    return [int(popularity[d]) for d in draws]


def quality(migrated: np.ndarray, log: Counter[int], doc_ids: list[str], a_docs: np.ndarray, b_docs: np.ndarray,
            a_q: np.ndarray, b_q: np.ndarray, qids: list[str], qrels: Qrels) -> float:
    """Frequency-weighted nDCG@10 of merged reads over ``log``."""
    everything = np.ones(len(doc_ids), bool)
    keys = {doc_ids[i] for i in np.flatnonzero(migrated)}
    total = weight = 0.0
    for qi, count in log.items():
        src = top_k(a_docs, a_q[qi], everything, K)
        tgt = top_k(b_docs, b_q[qi], migrated, K)
        page, _ = merge([Hit(doc_ids[i], s, side="target") for i, s in tgt],
                        [Hit(doc_ids[i], s, side="source") for i, s in src],
                        in_target=[doc_ids[i] for i, _ in src if doc_ids[i] in keys], limit=K)
        total += count * ndcg_recall([h.key for h in page], qrels[qids[qi]])[0]
        weight += count
    return total / weight


def area(curve: list[float]) -> float:
    xs = np.linspace(0, 1, len(curve))
    return float(np.sum((xs[1:] - xs[:-1]) * (np.asarray(curve[1:]) + np.asarray(curve[:-1])) / 2))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="7,1")
    parser.add_argument("--log", type=int, default=4000, help="queries in the log (half counted, half scored)")
    parser.add_argument("--zipf", type=float, default=1.0)
    args = parser.parse_args()
    doc_ids, doc_texts, qids, qtexts, qrels = load(args.data)
    keep = [i for i, q in enumerate(qids) if q in qrels]
    a_docs = await embed_cached(MODEL_A, doc_texts, "docs")
    b_docs = await embed_cached(MODEL_B, doc_texts, "docs")
    a_q = (await embed_cached(MODEL_A, qtexts, "queries"))[keep]
    b_q = (await embed_cached(MODEL_B, qtexts, "queries"))[keep]
    kept = [qids[i] for i in keep]
    n = len(doc_ids)
    everything = np.ones(n, bool)
    print(f"{args.data.name}: {n} documents, {len(kept)} questions, log of {args.log} drawn with Zipf "
          f"exponent {args.zipf}; merged reads (d), nDCG@10 weighted by frequency\n")
    for seed in (int(x) for x in args.seeds.split(",")):
        log = zipf_log(len(kept), args.log, args.zipf, seed)
        counted, scored = log[: len(log) // 2], Counter(log[len(log) // 2:])
        sketch = HeavyHitters()
        for qi in counted:  # nothing migrated yet: the merged read returns the source's top 10
            sketch.offer(str(i) for i, _ in top_k(a_docs, a_q[qi], everything, K))
        chosen = backfill_order("hot", sketch.counts)
        hot = [int(k) for k in chosen.hot]
        rest = [i for i in range(n) if i not in set(hot)]
        orders = {"id": list(range(n)), "hot": hot + rest}
        assert sorted(orders["hot"]) == list(range(n))  # every point exactly once
        curves: dict[str, list[float]] = {}
        for name, order in orders.items():
            curves[name] = []
            for step in range(STEPS + 1):
                migrated = np.zeros(n, bool)
                migrated[order[: round(step / STEPS * n)]] = True
                curves[name].append(quality(migrated, scored, doc_ids, a_docs, b_docs, a_q, b_q, kept, qrels))
        print(f"seed {seed}: {chosen.reason}; {len(scored)} distinct questions scored\n")
        print("| migrated | --order id | --order hot |")
        print("| ---: | --- | --- |")
        for step in range(STEPS + 1):
            print(f"| {step * 100 // STEPS}% | {curves['id'][step]:.3f} | {curves['hot'][step]:.3f} |")
        print(f"| area under curve | {area(curves['id']):.3f} | {area(curves['hot']):.3f} |\n")


if __name__ == "__main__":
    asyncio.run(main())
