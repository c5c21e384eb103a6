"""Data-plane latency during a migration, in one run on the embedded upstream.

Reads: a merged read (``MergedReader``, query sent as an inference object, so the proxy embeds
the text for both sides, fans out, looks the source hits' documents up in the target and
merges) against single-collection reads of the same query (a precomputed vector, straight to
the source or the target) and against both single reads sent at once (what the upstream makes
of two concurrent queries). Target: merged <= 1.3x the slower single read. The embedding time
of the query (both models, hashing embedder) is measured and reported separately, and each
merged read's time is split at its upstream calls (``breakdown``).

The upstream is its own process (``python -m switchyard.proxy upstream``); the reader runs in this
process, calling it through the proxy's own upstream client, as the proxy does. Rounds
alternate between the three kinds so machine drift hits all of them.

    python bench/data_plane.py                 # 5,000 points, half migrated, 3 rounds of 60 queries
    python bench/data_plane.py --quick         # 2,000 points, 2 rounds of 30

Writes: see the marked section at the end (mirrored-write latency, owned by the write path).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from switchyard.proxy.dataplane.embedder_pool import EmbedderPool  # noqa: E402
from switchyard.proxy.dataplane.reads import MergedReader  # noqa: E402
from switchyard.proxy.migration.record import DUAL_WRITE, Migration  # noqa: E402
from switchyard.proxy.migration.routing import route_for  # noqa: E402
from switchyard.proxy.modelspec import ModelSpec  # noqa: E402
from switchyard.proxy.state.snapshot import StateSnapshot  # noqa: E402
from switchyard.proxy.upstream.rest_client import RestUpstream  # noqa: E402
from switchyard.proxy.wire import RestCall  # noqa: E402

JSON = (("content-type", "application/json"),)
WORDS = [f"w{i}" for i in range(400)]


def spawn_upstream() -> tuple[subprocess.Popen[str], int]:
    popen = subprocess.Popen(
        [sys.executable, "-m", "switchyard.proxy", "upstream", "--http-port", "0", "--grpc-port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert popen.stdout is not None
    line = popen.stdout.readline()
    match = re.search(r"http=\S+:(\d+) grpc=\S+:(\d+)", line)
    if not match:
        popen.kill()
        raise SystemExit(f"could not start the embedded upstream: {line!r}")
    return popen, int(match[1])


def texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=12)) for _ in range(n)]


async def post(up: RestUpstream, path: str, body: Any, method: str = "POST") -> Any:
    reply = await up.request(RestCall(method, path, "", JSON, b"" if body is None else orjson.dumps(body)))
    if not reply.ok:
        raise SystemExit(f"{method} {path}: {reply.status} {reply.body[:200]!r}")
    return orjson.loads(reply.body)


async def fill(up: RestUpstream, pool: EmbedderPool, name: str, spec: ModelSpec,
               docs: list[str], count: int) -> None:
    await post(up, f"/collections/{name}", {"vectors": {"size": spec.dimensions,
                                                        "distance": spec.distance}}, "PUT")
    for start in range(0, count, 500):
        ids = range(start, min(count, start + 500))
        vecs = await pool.embed(spec, [docs[i] for i in ids])
        points = [{"id": i, "vector": vecs[k].tolist(), "payload": {"doc_id": f"d{i}", "text": docs[i]}}
                  for k, i in enumerate(ids)]
        await post(up, f"/collections/{name}/points?wait=true", {"points": points}, "PUT")


async def settled(up: RestUpstream, name: str, limit: float = 600.0) -> None:
    """Wait until the collection is green: a segment the optimizer is indexing (HNSW, from
    about 10 MB of vectors) would slow whichever reads run beside the build."""
    deadline = time.monotonic() + limit
    while (await post(up, f"/collections/{name}", None, "GET"))["result"]["status"] != "green":
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} still not green after {limit:.0f} s")
        await asyncio.sleep(0.5)


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))]


async def reads(rest_port: int, points: int, rounds: int, per_round: int, limit: int,
                dims: tuple[int, int] = (64, 96)) -> dict[str, Any]:
    url = f"http://127.0.0.1:{rest_port}"
    up = RestUpstream(url)
    pool = EmbedderPool()
    a = ModelSpec(id="a", provider="hashing", model="bench-a", dimensions=dims[0])
    b = ModelSpec(id="b", provider="hashing", model="bench-b", dimensions=dims[1])
    docs = texts(points, 1)
    await fill(up, pool, "dp_src", a, docs, points)
    await fill(up, pool, "dp_tgt", b, docs, points // 2)
    # the target as `migrate plan` makes it: a payload index of the doc key (the exact lookup's
    # MatchAny runs on it; without it the engine scans every payload)
    await post(up, "/collections/dp_tgt/index?wait=true",
               {"field_name": "doc_id", "field_schema": "keyword"}, "PUT")
    for name in ("dp_src", "dp_tgt"):
        await settled(up, name)
    m = Migration(id="dp", logical="dp", source="dp_src", target="dp_tgt", model_a="a", model_b="b",
                  phase=DUAL_WRITE, read_mode="merged",
                  counters={"backfill_done": points // 2, "backfill_total": points})
    snap = StateSnapshot(models={"a": a, "b": b}, migrations={"dp": m})
    route = route_for(m, "read")
    reader = MergedReader(pool)
    by_lookup = {"merged": m, "merged_ids": dataclasses.replace(m, lookup="ids")}
    queries = texts(rounds * per_round, 2)
    qa, qb = await pool.embed(a, queries), await pool.embed(b, queries)
    samples: dict[str, list[float]] = {
        "merged": [], "merged_ids": [], "source": [], "target": [], "pair": [], "embed": []}
    phases: dict[str, dict[str, list[float]]] = {k: {p: [] for p in PHASES} for k in by_lookup}

    async def merged(i: int, kind: str = "merged") -> None:
        body = orjson.dumps({"query": {"text": queries[i], "model": "a"}, "limit": limit})
        calls: list[tuple[str, float, float]] = []

        async def forward(call: RestCall) -> Any:  # the reader's upstream calls, timed
            start = time.perf_counter()
            reply = await up.request(call)
            calls.append((call.path, start, time.perf_counter()))
            return reply

        start = time.perf_counter()
        reply = await reader.rest(RestCall("POST", "/collections/dp/points/query", "", JSON, body),
                                  route, by_lookup[kind], snap, forward)
        assert reply.ok, reply.body
        for phase, value in breakdown(start, time.perf_counter(), calls).items():
            phases[kind][phase].append(value)

    async def single(collection: str, vec: np.ndarray) -> None:
        await post(up, f"/collections/{collection}/points/query", {"query": vec.tolist(), "limit": limit})

    for i in range(5):  # warm-up: connections, caches
        await merged(i)
        await merged(i, "merged_ids")
        await single("dp_src", qa[i])
    for r in range(rounds):
        for k in range(per_round):
            i = r * per_round + k
            for kind in ("merged", "merged_ids")[::1 if i % 2 else -1]:  # each first half the time
                samples[kind].append(await timed(lambda: merged(i, kind)))
            samples["source"].append(await timed(lambda: single("dp_src", qa[i])))
            samples["target"].append(await timed(lambda: single("dp_tgt", qb[i])))
            samples["pair"].append(await timed(lambda: asyncio.gather(
                single("dp_src", qa[i]), single("dp_tgt", qb[i]))))
            samples["embed"].append(await timed(lambda: asyncio.gather(
                pool.embed(a, [queries[i]]), pool.embed(b, [queries[i]]))))
    await reader.aclose()
    await pool.aclose()
    await up.close()
    out: dict[str, Any] = {k: summary(v) for k, v in samples.items()}
    out["phases"] = {k: {p: statistics.median(v) for p, v in ph.items() if v} for k, ph in phases.items()}
    return out


#: Where a merged read's time goes (``breakdown``), in the order they happen.
PHASES = ("before the side calls", "side calls (both, in parallel)", "lookup call",
          "between the calls", "after the last call")


def breakdown(start: float, end: float, calls: list[tuple[str, float, float]]) -> dict[str, float]:
    """One merged read's wall time split at its upstream calls: until the first side call starts
    (plans, query embedding, request bodies), the two side queries (first start to last end),
    the lookup (scroll or retrieve) call, the proxy's work between the source's answer and the
    lookup, and after the last call
    (merge, encode). A read that needed a second fetch round is not split (``{}``)."""
    sides = [c for c in calls if c[0].endswith("/points/query")]
    lookups = [c for c in calls if not c[0].endswith("/points/query")]
    if len(sides) != 2 or len(lookups) > 1:
        return {}
    side_start, side_end = min(c[1] for c in sides), max(c[2] for c in sides)
    last = max(c[2] for c in calls)
    lookup = sum(c[2] - c[1] for c in lookups)
    before_lookup = [c[2] for c in sides if lookups and c[2] <= lookups[0][1]]
    between = lookups[0][1] - max(before_lookup) if before_lookup else 0.0
    return dict(zip(PHASES, (side_start - start, side_end - side_start, lookup, between, end - last)))


async def writes(rest_port: int, count: int, batch: int) -> dict[str, Any]:
    """Client-observed upsert latency through a real proxy: a bound collection without a
    migration (plain) against the logical name of a migration in ``dual_write`` (mirrored)."""
    from switchyard.proxy.app import ProxyServer
    from switchyard.proxy.config import load_config
    from switchyard.proxy.interception import build_interceptor
    from switchyard.proxy.registry import bind, register_model
    from switchyard.proxy.state.records import Binding
    from switchyard.proxy.state.store import StateStore

    upstream = f"http://127.0.0.1:{rest_port}"
    config = load_config({"upstream_rest_url": upstream, "upstream_grpc_address": "127.0.0.1:1",
                          "listen_rest": "127.0.0.1:0", "listen_grpc": "127.0.0.1:0",
                          "state_cache_ttl": "0.2", "heartbeat_interval": "0.3"}, {}, None)
    server = ProxyServer(config, build_interceptor(config), drain_seconds=1)
    await server.start()
    direct, proxied = RestUpstream(upstream), RestUpstream(f"http://127.0.0.1:{server.rest_port}")
    pool = EmbedderPool()
    a = ModelSpec(id="wa", provider="hashing", model="bench-wa", dimensions=64)
    b = ModelSpec(id="wb", provider="hashing", model="bench-wb", dimensions=96)
    store = StateStore.connect(upstream)
    for name in ("w_plain", "w_src", "w_src_async", "w_direct"):
        await post(direct, f"/collections/{name}", {"vectors": {"size": 64, "distance": "Cosine"}}, "PUT")
    await post(direct, "/collections/aliases", {"actions": [
        {"create_alias": {"collection_name": "w_src", "alias_name": "w_docs"}},
        {"create_alias": {"collection_name": "w_src_async", "alias_name": "w_docs_async"}}]})
    for spec in (a, b):
        await register_model(store, spec)
    for name in ("w_plain", "w_src", "w_src_async"):
        await bind(store, store.client, Binding(name, "wa"))
    targets = {}
    for logical, mirror in (("w_docs", "sync"), ("w_docs_async", "async")):
        planned = await post(proxied, "/switchyard/v1/migrations",
                             {"logical": logical, "to_model": "wb", "mirror": mirror})
        mid = planned["result"]["migration"]["id"]
        await post(proxied, f"/switchyard/v1/migrations/{mid}/transition", {"name": "start"})
        targets[logical] = planned["result"]["migration"]["target"]
    docs = texts(count * batch, 3)
    vecs = await pool.embed(a, docs)
    samples: dict[str, list[float]] = {"plain": [], "mirrored": [], "mirrored_async": [], "embed": [], "direct": []}

    def body(i: int) -> Any:
        return {"points": [{"id": i * batch + k, "vector": vecs[i * batch + k].tolist(),
                            "payload": {"text": docs[i * batch + k], "doc_id": f"d{i * batch + k}"}}
                           for k in range(batch)]}

    for i in range(count):
        samples["plain"].append(await timed(
            lambda: post(proxied, "/collections/w_plain/points?wait=true", body(i), "PUT")))
        samples["mirrored"].append(await timed(
            lambda: post(proxied, "/collections/w_docs/points?wait=true", body(i), "PUT")))
        samples["mirrored_async"].append(await timed(
            lambda: post(proxied, "/collections/w_docs_async/points?wait=true", body(i), "PUT")))
        samples["embed"].append(await timed(
            lambda: pool.embed(b, [docs[i * batch + k] for k in range(batch)])))
        samples["direct"].append(await timed(  # what the secondary leg's write costs the upstream
            lambda: post(direct, "/collections/w_direct/points?wait=true", body(i), "PUT")))
    for _ in range(50):  # the async mirror drains its queue after the last answer
        counts = [(await post(direct, f"/collections/{t}/points/count", {"exact": True}))["result"]["count"]
                  for t in targets.values()]
        if counts == [count * batch] * len(targets):
            break
        await asyncio.sleep(0.1)
    else:  # the measurement is only meaningful if the mirrors really ran
        raise SystemExit(f"mirror check failed: {counts} of {count * batch} points in {list(targets.values())}")
    await pool.aclose()
    await store.close()
    await direct.close()
    await proxied.close()
    await server.stop()
    return {k: summary(v) for k, v in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--dims", default="64,96", help="vector sizes of models A and B (reads)")
    parser.add_argument("--reads-only", action="store_true")
    parser.add_argument("--batch", type=int, default=16, help="points per upsert in the write half")
    args = parser.parse_args()
    points = args.points or (2_000 if args.quick else 5_000)
    rounds, per_round = (2, 30) if args.quick else (3, 60)
    proc, rest_port = spawn_upstream()
    try:
        dims = tuple(int(d) for d in args.dims.split(","))
        res = asyncio.run(reads(rest_port, points, rounds, per_round, args.limit, (dims[0], dims[1])))
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"reads: {points} points in the source, {points // 2} in the target, dims {args.dims}, limit {args.limit}, "
          f"{rounds * per_round} queries per kind (embedded upstream, REST)")
    print(f"{'kind':<28}{'p50 ms':>10}{'p90 ms':>10}")
    labels = {"source": "single read, source", "target": "single read, target",
              "merged": "merged, lookup exact", "merged_ids": "merged, lookup ids",
              "pair": "both single reads at once", "embed": "query embedding, A and B"}
    for key in ("source", "target", "pair", "merged", "merged_ids", "embed"):
        p50, p90 = res[key]
        print(f"{labels[key]:<28}{p50 * 1e3:>10.2f}{p90 * 1e3:>10.2f}")
    slower = max(res["source"][0], res["target"][0])
    for key in ("merged", "merged_ids"):
        ratio = res[key][0] / slower
        ratio_ex = (res[key][0] - res["embed"][0]) / slower
        print(f"{labels[key]} / slower single read (p50): {ratio:.2f}x "
              f"({ratio_ex:.2f}x without the query embedding); target <= 1.30x: "
              f"{'met' if ratio <= 1.3 else 'NOT met'}")
    print("where a merged read's time goes (p50 of each part, ms; the upstream calls are waits):")
    for key in ("merged", "merged_ids"):
        parts = res["phases"][key]
        print(f"  {labels[key]:<26}" + ", ".join(f"{p} {parts[p] * 1e3:.2f}" for p in PHASES if p in parts))
    if args.reads_only:
        return 0

    # ------------------------------------------------------------------ mirrored writes
    proc, rest_port = spawn_upstream()
    try:
        w = asyncio.run(writes(rest_port, rounds * per_round, args.batch))
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"\nwrites: upserts of {args.batch} points through a real proxy, {rounds * per_round} per kind "
          "(embedded upstream, REST)")
    print(f"{'kind':<36}{'p50 ms':>10}{'p90 ms':>10}")
    wlabels = {"plain": "plain write (bound, no migration)", "mirrored": "mirrored write (dual_write)",
               "mirrored_async": "mirrored write, --mirror async", "embed": "embedding alone (model B)",
               "direct": "the same write straight to upstream"}
    for key in ("plain", "mirrored", "mirrored_async", "embed", "direct"):
        p50, p90 = w[key]
        print(f"{wlabels[key]:<36}{p50 * 1e3:>10.2f}{p90 * 1e3:>10.2f}")
    ratio = (w["mirrored"][0] - w["embed"][0]) / w["plain"][0]
    print(f"(mirrored - embedding) / plain (p50): {ratio:.2f}x; target <= 1.50x: "
          f"{'met' if ratio <= 1.5 else 'NOT met'}")
    print(f"--mirror async / plain (p50): {w['mirrored_async'][0] / w['plain'][0]:.2f}x "
          "(the client does not wait for the secondary)")
    floor = 1 + w["direct"][0] / w["plain"][0]
    print(f"floor of a sync mirror, (plain + direct) / plain (p50): {floor:.2f}x (the secondary is "
          "written only after the primary applied, so its own write time adds to the plain write)")
    # ------------------------------------------------------------------ end mirrored writes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
