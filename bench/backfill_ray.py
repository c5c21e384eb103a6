"""Backfill throughput: the plain daemon against ``--executor ray``, same model, data and machine.

Prints, in one run, on the embedded upstream (its own process) with real passages:
- start-up: Ray (a local loopback instance) and the actor pool's first answer (actors start
  and load the model), apart from the backfill clocks;
- the round trip of one small request through the long-lived execution, against the local
  embedder (what Ray adds per daemon batch);
- what a Ray Data execution per daemon batch would cost instead (the design not taken);
- points/s of a full backfill with each executor and their ratio (both embedders loaded and
  warmed before the clock starts; same batch size and in-flight batches).

Usage: python bench/backfill_ray.py [--points 2000] [--actors 2] [--model l3|hashing]
On 2 shared cores Ray's actors compete with the daemon and the upstream for the same CPUs;
the figures say what Ray costs here, not what a cluster's GPUs would give.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from backfill_helpers import new_store, setup_migration  # noqa: E402
from switchyard.backfill import ray_executor  # noqa: E402
from switchyard.backfill.daemon import Daemon, DaemonConfig  # noqa: E402
from switchyard.proxy import registry  # noqa: E402
from switchyard.proxy.embedders import Embedder, make_embedder  # noqa: E402
from switchyard.proxy.modelspec import ModelSpec  # noqa: E402
from switchyard.proxy.state.store import StateStore  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_backfill", ROOT / "bench" / "backfill.py")
assert _spec is not None and _spec.loader is not None
bench_backfill = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_backfill)

MODELS = {"l3": ModelSpec(id="ray-l3", provider="local", model="pkg:paraphrase-MiniLM-L3-v2", dimensions=384),
          "hashing": ModelSpec(id="ray-hash", provider="hashing", model="b", dimensions=8)}


async def backfill_rate(url: str, spec: ModelSpec, n: int, embedder: Embedder, config: DaemonConfig) -> float:
    """Points per second of one daemon run to completion with an already warm ``embedder``."""
    client = StateStore.connect(url, timeout=120).client
    store = new_store(client)
    try:
        await registry.register_model(store, spec, replace=True)
        mid = await setup_migration(client, store, f"bray_{uuid.uuid4().hex[:6]}_", list(range(n)),
                                    model_b=spec.id, texts=bench_backfill.passages(n))
        t0 = time.perf_counter()
        stats = await Daemon(store, mid, config, embedder=embedder).run(once=True)
        return stats.written / (time.perf_counter() - t0)
    finally:
        await client.close()


async def round_trip(embedder: Embedder, k: int = 15) -> float:
    """Median seconds of one 1-text embed call."""
    times = []
    for i in range(k):
        t0 = time.perf_counter()
        await embedder.embed([f"a short text {i}"])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def dataset_per_batch(ray: Any, spec: ModelSpec, actors: int, batch: int, k: int = 3) -> list[float]:
    """Seconds of a whole Ray Data execution for one daemon batch (a new actor pool each time)."""
    out = []
    texts = bench_backfill.passages(batch)
    for _ in range(k):
        t0 = time.perf_counter()
        rows = ray.data.from_items([{"req": 1, "texts": texts}]).map_batches(
            ray_executor.EmbedActor, fn_constructor_kwargs={"spec": spec.to_dict()},
            compute=ray.data.ActorPoolStrategy(size=actors), batch_size=None,
            batch_format="pyarrow", num_cpus=1).take_all()
        assert len(rows) == 1 and not rows[0]["error"], rows
        out.append(time.perf_counter() - t0)
    return out


async def main(args: argparse.Namespace) -> None:
    base = MODELS[args.model]
    # Two single-threaded actors on 2 cores; the local embedder keeps its default (all cores).
    ray_spec = dataclasses.replace(base, intra_op_threads=1) if base.provider == "local" else base
    config = DaemonConfig(batch_size=args.batch_size, concurrency=args.concurrency, refresh=0.5,
                          int_partitions=4, uuid_partitions=1, idle_poll=0.1, progress_interval=3600)
    server = bench_backfill.UpstreamProcess()
    ray = ray_executor.import_ray(local=True)
    try:
        t0 = time.perf_counter()
        ray.init(include_dashboard=False, num_cpus=args.actors)
        ray_start = time.perf_counter() - t0
        local = make_embedder(base)
        await local.embed(bench_backfill.passages(args.batch_size))  # loaded and warm
        pool = ray_executor.RayEmbedder(ray_spec, actors=args.actors)
        t0 = time.perf_counter()
        await pool.embed(bench_backfill.passages(args.batch_size))
        pool_start = time.perf_counter() - t0
        for _ in range(2 * args.actors):  # every actor has loaded the model and answered
            await asyncio.gather(*(pool.embed(bench_backfill.passages(args.batch_size))
                                   for _ in range(args.actors)))
        print(f"start-up: ray.init {ray_start:.1f} s; actor pool's first answer {pool_start:.1f} s "
              f"({args.actors} actors, model {base.model})")
        rt_local, rt_ray = await round_trip(local), await round_trip(pool)
        print(f"round trip of one 1-text batch: local {rt_local * 1000:.1f} ms, ray {rt_ray * 1000:.0f} ms "
              f"(median of 15)")
        local_rate = await backfill_rate(server.rest_url, base, args.points, local, config)
        ray_rate = await backfill_rate(server.rest_url, ray_spec, args.points, pool, config)
        print(f"backfill, {args.points} points, batch {args.batch_size}, {args.concurrency} in flight: "
              f"local {local_rate:,.0f} points/s, ray {ray_rate:,.0f} points/s "
              f"(ray/local {ray_rate / local_rate:.2f})")
        await local.aclose()
        await pool.aclose()
        per_batch = dataset_per_batch(ray, ray_spec, args.actors, args.batch_size)
        print("a Ray Data execution per daemon batch instead: "
              + ", ".join(f"{s:.1f}" for s in per_batch) + " s each (actor pool started anew)")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        server.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--model", choices=sorted(MODELS), default="l3")
    asyncio.run(main(p.parse_args()))
