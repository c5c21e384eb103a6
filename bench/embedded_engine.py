"""The embedded upstream's two engines side by side, in one run: local (qdrant-client's) and
edge (Qdrant's own, qdrant-edge-py).

Per engine and size (384-d cosine vectors, random; a keyword payload ``g`` with 10 values,
indexed): upsert throughput (batches of 500), exact search and filtered search (``g`` = one
value, ~10 % of the points) latency p50/p99, and HNSW search latency with recall@10 against
exact numpy neighbours. The local engine has no HNSW: its row repeats the exact search.

Measured at the engine seam (``engine.call``, what both front ends call), so HTTP and JSON are
left out and the ratio is the engines'. The edge numbers include the pipe to the collection's
worker process (see docs/design.md). Exact and filtered search run on a collection whose
optimizer is off (``indexing_threshold`` 0: plain segments, as Qdrant's before indexing); HNSW
on a second collection with Qdrant's default thresholds, whose build time is reported.

    python bench/embedded_engine.py                    # 20,000 and 100,000 points
    python bench/embedded_engine.py --sizes 20000      # the 100k HNSW build takes ~11 min here
    python bench/embedded_engine.py --sizes 5000 --queries 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qdrant_client.http import models  # noqa: E402

from switchyard.proxy.embedded.engines import edge_available, make_engine  # noqa: E402

DIM = 384
BATCH = 500
GROUPS = 10


def dataset(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def points(x: np.ndarray, start: int, stop: int) -> list[models.PointStruct]:
    return [models.PointStruct(id=i, vector=x[i].tolist(), payload={"g": f"g{i % GROUPS}", "i": i})
            for i in range(start, stop)]


def exact_neighbours(x: np.ndarray, queries: np.ndarray, k: int = 10) -> list[set[int]]:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q @ unit.T
    return [set(np.argsort(-row)[:k].tolist()) for row in scores]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def timed(fn: Any, count: int) -> tuple[list[float], list[Any]]:
    times, results = [], []
    for i in range(count):
        t = time.perf_counter()
        results.append(await fn(i))
        times.append(time.perf_counter() - t)
    return times, results


async def load(engine: Any, name: str, x: np.ndarray, optimizers: Any) -> float:
    """Create ``name`` and upsert ``x``; the upsert throughput in points/s."""
    await engine.call("create_collection", name,
                      vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
                      optimizers_config=optimizers)
    await engine.call("create_payload_index", name, "g", field_schema=models.PayloadSchemaType.KEYWORD)
    batches = [points(x, s, min(len(x), s + BATCH)) for s in range(0, len(x), BATCH)]
    t = time.perf_counter()
    for batch in batches:
        await engine.call("upsert", name, batch)
    return len(x) / (time.perf_counter() - t)


async def run_engine(kind: str, n: int, queries: int, hnsw_ef: int | None) -> dict[str, Any]:
    x = dataset(n)
    qs = x[np.random.default_rng(2).choice(n, queries, replace=False)] + 0.1 * dataset(queries, 3)
    truth = exact_neighbours(x, qs)
    engine: Any = make_engine(kind, None)
    out: dict[str, Any] = {"engine": kind, "n": n}
    try:
        off = models.OptimizersConfigDiff(indexing_threshold=0)
        out["upsert"] = await load(engine, "plain", x, off)
        exact = models.SearchParams(exact=True)
        flt = models.Filter(must=[models.FieldCondition(key="g", match=models.MatchValue(value="g3"))])

        async def search(i: int, **kw: Any) -> Any:
            return await engine.call("query_points", "plain", query=qs[i].tolist(), limit=10,
                                     search_params=exact, **kw)

        out["exact"], found = await timed(search, queries)
        out["exact_recall"] = recall(found, truth)
        out["filtered"], _ = await timed(lambda i: search(i, query_filter=flt), queries)
        if kind == "edge":
            await engine.call("delete_collection", "plain")
            t = time.perf_counter()  # upload with Qdrant's thresholds, until fully indexed
            await load(engine, "hnsw", x, None)
            await engine.wait_optimized("hnsw")
            out["build"] = time.perf_counter() - t
            info = await engine.call("get_collection", "hnsw")
            out["indexed"] = info.indexed_vectors_count

            params = models.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None

            async def hnsw(i: int) -> Any:
                return await engine.call("query_points", "hnsw", query=qs[i].tolist(), limit=10,
                                         search_params=params)

            out["hnsw"], found = await timed(hnsw, queries)
            out["hnsw_recall"] = recall(found, truth)
        else:
            out["hnsw"], out["hnsw_recall"] = out["exact"], out["exact_recall"]
    finally:
        closing = getattr(engine, "aclose", None)
        await closing() if closing is not None else engine.close()
    return out


def recall(found: list[Any], truth: list[set[int]]) -> float:
    hits = [len({p.id for p in r.points} & t) / len(t) for r, t in zip(found, truth)]
    return statistics.mean(hits)


def ms(values: list[float]) -> str:
    return f"{pct(values, 50) * 1e3:8.2f} {pct(values, 99) * 1e3:8.2f}"


HEADER = (f"{'engine':<7}{'points':>8}{'upsert/s':>10}  {'exact p50/p99 ms':>17}  "
          f"{'filtered p50/p99':>17}  {'hnsw p50/p99':>17} {'recall@10':>9} {'load+index s':>12}")


def row_line(r: dict[str, Any]) -> str:
    build = f"{r['build']:12.1f}" if "build" in r else "         n/a"
    return (f"{r['engine']:<7}{r['n']:>8}{r['upsert']:>10.0f}  {ms(r['exact'])}  "
            f"{ms(r['filtered'])}  {ms(r['hnsw'])} {r['hnsw_recall']:>9.3f} {build}")


def report(rows: list[dict[str, Any]]) -> None:
    print(f"\n{HEADER}")
    for r in rows:
        print(row_line(r))
    by = {(r["engine"], r["n"]): r for r in rows}
    for n in sorted({r["n"] for r in rows}):
        local, edge = by.get(("local", n)), by.get(("edge", n))
        if local and edge:
            def ratio(key: str) -> float:
                return pct(local[key], 50) / pct(edge[key], 50)
            print(f"{n} points: edge vs local p50: exact {ratio('exact'):.1f}x, filtered "
                  f"{ratio('filtered'):.1f}x, hnsw-vs-exact {pct(local['exact'], 50) / pct(edge['hnsw'], 50):.1f}x, "
                  f"upsert {edge['upsert'] / local['upsert']:.1f}x")


async def main_async(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    engines = [e for e in args.engines.split(",") if e != "edge" or edge_available()]
    rows = []
    for n in sizes:
        for kind in engines:
            t = time.perf_counter()
            row = await run_engine(kind, n, args.queries, args.hnsw_ef)
            rows.append(row)
            indexed = f", {row['indexed']} vectors indexed" if "indexed" in row else ""
            print(f"{kind} at {n}: done in {time.perf_counter() - t:.0f} s{indexed}", flush=True)
            print(f"  {HEADER}\n  {row_line(row)}", flush=True)  # kept if a later size is cut off
    report(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000", help="comma-separated point counts")
    parser.add_argument("--queries", type=int, default=50, help="queries per measurement")
    parser.add_argument("--engines", default="local,edge")
    parser.add_argument("--hnsw-ef", type=int, default=None,
                        help="hnsw_ef of the HNSW searches (default: the engine's, ef_construct)")
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
