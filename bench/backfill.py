"""Backfill throughput, memory and throttle accuracy on the embedded upstream.

Prints, in one run:
- each embedder's standalone throughput (texts/s) and the backfill's throughput with it
  (points/s and the ratio; target >= 0.9) -- the hashing provider, plus the local ONNX models
  when installed (on a smaller corpus), with the projected time for 100,000 points. Both
  sides use the same embedder object, loaded and warmed before either clock starts, and the
  same batch size (the daemon's); the model's load time is printed on its own;
- backfill throughput with a zero-cost embedder and in copy-vectors mode (the upstream ceiling);
- peak RSS of a backfill daemon subprocess at each corpus size (target: flat);
- the measured rate with the throttle at 200 points/s over 20 s (target: within 10%).

Usage: python bench/backfill.py [--sizes 20000,100000] [--model-points 2000] [--skip-throttle]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


from switchyard.backfill.daemon import Daemon, DaemonConfig  # noqa: E402
from backfill_helpers import new_store, setup_migration  # noqa: E402
from switchyard.proxy import registry  # noqa: E402
from switchyard.proxy.embedded.server import BackgroundUpstream  # noqa: E402
from switchyard.proxy.embedders import make_embedder  # noqa: E402
from switchyard.proxy.migration.record import Migration  # noqa: E402
from switchyard.proxy.modelspec import ModelSpec  # noqa: E402
from switchyard.proxy.state.store import StateStore  # noqa: E402

CONFIG = DaemonConfig(batch_size=256, concurrency=2, refresh=0.5, int_partitions=4, uuid_partitions=1,
                      idle_poll=0.1, progress_interval=3600)
LOCAL = [ModelSpec(id="l3", provider="local", model="pkg:paraphrase-MiniLM-L3-v2", dimensions=384),
         ModelSpec(id="l6", provider="local", model="pkg:all-MiniLM-L6-v2-int8", dimensions=384)]


class ZeroCost:
    """An embedder that costs nothing: the ceiling set by the upstream."""

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.spec = ModelSpec(id="zero", provider="hashing", model="zero", dimensions=dims)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), np.float32)
        out[:, 0] = 1.0
        return out

    async def aclose(self) -> None:
        return None


def passages(n: int) -> list[str]:
    """Real ~100-200-word passages (pydocs-faq), cycled: what a backfill actually embeds."""
    path = ROOT.parent / "shared" / "datasets" / "pydocs-faq" / "corpus.jsonl"
    if not path.exists():
        return [f"document {i} v0" for i in range(n)]
    import json
    docs = [json.loads(line)["text"] for line in path.open()]
    return [docs[i % len(docs)] for i in range(n)]


async def loaded(spec: ModelSpec) -> tuple[Any, float]:
    """The embedder, loaded and warmed on one batch; and the seconds that took (model load)."""
    emb = make_embedder(spec)
    t0 = time.perf_counter()
    await emb.embed(passages(CONFIG.batch_size))
    return emb, time.perf_counter() - t0


async def standalone(emb: Any, n: int, batch: int) -> float:
    """Texts per second of an already loaded embedder alone, in calls of ``batch`` texts."""
    texts = passages(n)
    t0 = time.perf_counter()
    for k in range(0, n, batch):
        await emb.embed(texts[k:k + batch])
    return n / (time.perf_counter() - t0)


async def backfill_rate(url: str, n: int, *, spec: ModelSpec | None = None, zero: bool = False,
                        copy: bool = False, throttle: float = 0.0,
                        embedder: Any = None) -> tuple[float, Any]:
    """Points per second of one daemon run to completion (``embedder``: an already loaded one,
    so the clock covers the backfill and not the model's load, as for the standalone rate)."""
    client = StateStore.connect(url, timeout=120).client  # the daemon's own kind of client
    store = new_store(client)
    prefix = f"bench_{uuid.uuid4().hex[:6]}_"
    try:
        if spec is not None:
            await registry.register_model(store, spec, replace=True)
        mid = await setup_migration(client, store, prefix, list(range(n)), copy_vectors=copy,
                                    throttle=throttle, model_b=spec.id if spec else None,
                                    texts=None if zero or copy else passages(n))
        embedder = ZeroCost(8) if zero else embedder
        t0 = time.perf_counter()
        stats = await Daemon(store, mid, CONFIG, embedder=embedder).run(once=True)
        took = time.perf_counter() - t0
        return stats.written / took, (store.collection, mid)
    finally:
        await client.close()


def rss_of_daemon(url: str, store_name: str, mid: str) -> float:
    """Run a fresh daemon subprocess over an already-planned migration; its peak RSS in MB.

    Sampled from ``/proc/<pid>/status`` (VmHWM, the high-water mark of this process's own
    memory): ``ru_maxrss`` of a child would include the forking parent's RSS.
    """
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-m", "switchyard.proxy", "--log-level", "WARNING", "backfill", mid,
                             "--url", url, "--state-collection", store_name, "--once", "--batch-size", "256"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    peak = 0.0
    while proc.poll() is None:
        try:
            for row in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if row.startswith("VmHWM:"):
                    peak = max(peak, int(row.split()[1]) / 1024)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.1)
    assert proc.returncode == 0, proc.returncode
    return peak


async def reset(url: str, store_name: str, mid: str) -> None:
    """Forget the partitions and empty the target so a daemon copies everything again."""
    client = StateStore.connect(url, timeout=120).client
    store = StateStore(client, collection=store_name)
    m = Migration.from_envelope(await store.require(Migration.KIND, mid))
    for env in await store.list("lease"):
        await store.delete("lease", env.key)
    await store.delete("backfill_plan", mid)
    info = await client.get_collection(m.target)
    await client.delete_collection(m.target)
    await client.create_collection(m.target, vectors_config=info.config.params.vectors)
    await client.close()


class UpstreamProcess:
    """The embedded upstream in a process of its own, so it does not share the daemon's GIL
    (as a real Qdrant would not): ``python -m switchyard.proxy upstream`` on free loopback ports."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "switchyard.proxy", "upstream", "--http-port", "0",
                                      "--grpc-port", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "http=" not in line:
            self.proc.kill()
            raise SystemExit(f"embedded upstream did not start: {line!r}")
        self.rest_url = "http://" + line.split("http=")[1].split()[0].removeprefix("http://")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def main(args: argparse.Namespace) -> None:
    server: Any = UpstreamProcess() if args.upstream_process else BackgroundUpstream()
    if not args.upstream_process:
        server.start()
    url = server.rest_url
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        hashing = ModelSpec(id="bf-b", provider="hashing", model="b", dimensions=8)
        n0 = sizes[0]
        hashing_emb, _ = await loaded(hashing)
        emb = await standalone(hashing_emb, n0, CONFIG.batch_size)
        rate, _ = await backfill_rate(url, n0, embedder=hashing_emb)
        await hashing_emb.aclose()
        print(f"hashing embedder: standalone {emb:,.0f} texts/s; backfill {rate:,.0f} points/s "
              f"(ratio {rate / emb:.2f}) at {n0} points")
        zero, _ = await backfill_rate(url, n0, zero=True)
        copy, _ = await backfill_rate(url, n0, copy=True)
        print(f"zero-cost embedder: {zero:,.0f} points/s; copy-vectors: {copy:,.0f} points/s (upstream ceiling)")
        for spec in LOCAL:
            try:
                model, load_s = await loaded(spec)
            except Exception as exc:  # noqa: BLE001 -- a model not installed is reported, not fatal
                print(f"{spec.model}: not available ({exc})")
                continue
            s_rate = await standalone(model, args.model_points, CONFIG.batch_size)
            b_rate, _ = await backfill_rate(url, args.model_points, spec=spec, embedder=model)
            await model.aclose()
            print(f"{spec.model}: standalone {s_rate:,.0f} texts/s; backfill {b_rate:,.0f} points/s "
                  f"(ratio {b_rate / s_rate:.2f}; target >= 0.90); model load {load_s:.1f} s; "
                  f"projected 100,000 points in {(100_000 / b_rate + load_s) / 60:.1f} min")
        for n in sizes:
            _, (store_name, mid) = await backfill_rate(url, n, zero=True)
            await reset(url, store_name, mid)
            print(f"peak RSS of a daemon subprocess copying {n:,} points: {rss_of_daemon(url, store_name, mid):.0f} MB")
        if not args.skip_throttle:
            n = 200 * 25
            client = StateStore.connect(url, timeout=120).client  # the daemon's own kind of client
            store = new_store(client)
            mid = await setup_migration(client, store, f"bench_{uuid.uuid4().hex[:6]}_", list(range(n)), throttle=200.0)
            daemon = Daemon(store, mid, DaemonConfig(batch_size=20, concurrency=2, refresh=0.2))
            task = asyncio.ensure_future(daemon.run(once=True))
            await asyncio.sleep(3)  # let it reach its steady state
            before, t0 = daemon.stats.written, time.perf_counter()
            await asyncio.sleep(20)
            measured = (daemon.stats.written - before) / (time.perf_counter() - t0)
            task.cancel()
            with contextlib_suppress():
                await task
            print(f"throttle 200 points/s: measured {measured:.1f} points/s over 20 s "
                  f"({(measured / 200 - 1) * 100:+.1f}%)")
            await client.close()
    finally:
        server.stop()


class contextlib_suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return True


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="20000,100000")
    p.add_argument("--model-points", type=int, default=2000)
    p.add_argument("--skip-throttle", action="store_true")
    p.add_argument("--in-process-upstream", dest="upstream_process", action="store_false",
                   help="run the embedded upstream on a thread of this process (shares its GIL)")
    asyncio.run(main(p.parse_args()))
