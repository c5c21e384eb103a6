"""``switchyard demo``: the whole migration story on the embedded upstream, in one process.

Loads a corpus built from the docstrings of Python's standard library through a real proxy
with model A, plans and starts a migration to model B, backfills with a live progress line
while a background writer upserts, updates and deletes through the proxy, verifies, switches
reads and writes, completes, and asks the same questions before, during and after. Uses the
local ONNX pair when installed, else the hashing provider. With the pydocs-faq retrieval set
beside the clone (or ``--dataset``) it loads that set instead and ends with the measured quality:
nDCG@10 of model A, of the merged read mid-way (the backfill paused at half, reads merged), and
of model B (:mod:`switchyard.backfill.demo_quality`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import random
import sys
import threading
import time
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from switchyard.backfill import demo_quality as quality
from switchyard.backfill.daemon import Daemon, DaemonConfig
from switchyard.proxy.migration import progress
from switchyard.proxy import registry
from switchyard.proxy.migration.command import AdminClient
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore

MODULES = ("json", "os", "re", "collections", "itertools", "functools", "pathlib", "random", "string",
           "textwrap", "statistics", "datetime", "heapq", "bisect", "shutil", "tempfile", "csv",
           "argparse", "logging", "threading", "subprocess", "socket", "asyncio", "inspect", "typing",
           "decimal", "fractions", "hashlib", "base64", "zipfile", "tarfile", "sqlite3", "unittest")
QUESTIONS = ("how do I parse command line arguments", "compute the median of numbers",
             "read a csv file", "run a shell command", "make a temporary directory")
LOCAL = (ModelSpec(id="demo-l3", provider="local", model="pkg:paraphrase-MiniLM-L3-v2", dimensions=384),
         ModelSpec(id="demo-l6", provider="local", model="pkg:all-MiniLM-L6-v2-int8", dimensions=384))
HASHING = (ModelSpec(id="demo-hash-a", provider="hashing", model="demo-a", dimensions=64),
           ModelSpec(id="demo-hash-b", provider="hashing", model="demo-b", dimensions=96))


def corpus(limit: int) -> list[tuple[str, str, str]]:
    """(doc id, name, first paragraph of the docstring) of stdlib functions and classes."""
    out: list[tuple[str, str, str]] = []
    for name in MODULES:
        with contextlib.suppress(ImportError):
            mod = importlib.import_module(name)
            for attr, obj in sorted(vars(mod).items()):
                if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                    continue
                doc = (inspect.getdoc(obj) or "").split("\n\n")[0].strip()
                if len(doc) > 20:
                    out.append((f"{name}.{attr}", f"{name}.{attr}", doc[:500]))
    return out[:limit]


def pick_models(force_hashing: bool) -> tuple[ModelSpec, ModelSpec]:
    if not force_hashing:
        try:
            from switchyard.proxy.embedders import make_embedder
            for spec in LOCAL:
                asyncio.run(make_embedder(spec).embed(["probe"]))
            return LOCAL
        except Exception as exc:  # noqa: BLE001 -- models missing: the demo falls back, saying why
            print(f"local models unavailable ({exc}); using the hashing provider")
    return HASHING


def run(args: argparse.Namespace) -> int:
    from switchyard.proxy.app import ThreadedProxy
    from switchyard.proxy.config import load_config
    from switchyard.proxy.embedded.server import BackgroundUpstream
    from switchyard.proxy.interception import build_interceptor

    upstream = BackgroundUpstream()
    upstream.start()
    config = load_config({"upstream_rest_url": upstream.rest_url,
                          "upstream_grpc_address": f"{upstream.server.host}:{upstream.grpc_port}",
                          "listen_rest": "127.0.0.1:0", "listen_grpc": "127.0.0.1:0",
                          "state_cache_ttl": "0.2", "heartbeat_interval": "0.5", "heartbeat_ttl": "3",
                          # one process runs the upstream, the proxy, both models and the backfill
                          # on this machine's cores: the state refresh may wait behind a model
                          "state_max_staleness": "10"},
                         {}, None)
    proxy = ThreadedProxy(config, build_interceptor(config)).start()
    try:
        story(upstream.rest_url, f"http://127.0.0.1:{proxy.rest_port}", args)
    finally:
        proxy.stop()
        upstream.stop()
    return 0


def ask(client: QdrantClient, alias: str, model: ModelSpec, when: str, questions: tuple[str, ...]) -> None:
    print(f"\n-- questions {when} (model {model.id})")
    for q in questions:
        hits = client.query_points(alias, query=models.Document(text=q, model=model.id), limit=2).points
        print(f"  {q!r}: " + ", ".join(str((h.payload or {}).get("name")) for h in hits))


def story(direct_url: str, proxy_url: str, args: argparse.Namespace) -> None:
    a, b = pick_models(args.hashing)
    dataset, why = quality.find_dataset(args.dataset)
    judged = quality.load(dataset, args.points) if dataset else None
    if judged:
        docs, questions = judged.docs, tuple(list(judged.queries.values())[:4])
        print(f"corpus: {len(docs)} sections of the Python docs ({dataset}), {len(judged.queries)} judged "
              f"questions; models {a.id} -> {b.id}; proxy at {proxy_url}")
    else:
        docs, questions = corpus(args.points), QUESTIONS
        print(f"corpus: {len(docs)} stdlib docstrings ({why}); models {a.id} -> {b.id}; proxy at {proxy_url}")
    figures = quality.Figures()
    direct = QdrantClient(url=direct_url, check_compatibility=False)
    alias, source = "docs", "docs_v1"
    direct.create_collection(source, vectors_config=a.vector_params())
    direct.update_collection_aliases([models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=source, alias_name=alias))])

    async def setup() -> None:
        store = StateStore.connect(direct_url)
        for spec in (a, b):
            await registry.register_model(store, spec, replace=True)
        await registry.bind(store, store.client, Binding(source, a.id))
        await store.close()
    asyncio.run(setup())
    time.sleep(1.0)  # the proxy picks the binding up from the state store
    app = QdrantClient(url=proxy_url, check_compatibility=False, cloud_inference=True, timeout=120)
    for k in range(0, len(docs), 128):
        app.upsert(alias, [models.PointStruct(id=i, vector=models.Document(text=text, model=a.id),
                                              payload={"name": name, "text": text, "doc_id": doc_id})
                           for i, (doc_id, name, text) in enumerate(docs[k:k + 128], start=k)], wait=True)
    ask(app, alias, a, "before the migration", questions)
    if judged:
        figures.before = quality.mean_ndcg(app, alias, a.id, judged)
        print(f"nDCG@{quality.K} of model A over {len(judged.queries)} questions: {figures.before:.3f}")
    admin = AdminClient(proxy_url, None)
    mid = admin.call("POST", "/migrations", {"logical": alias, "to_model": b.id})["migration"]["id"]
    admin.call("POST", f"/migrations/{mid}/transition", {"name": "start"})
    print(f"\nmigration {mid} planned and started (dual_write); backfilling while the app writes")
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(app, alias, a, len(docs), stop), daemon=True)
    writer.start()
    try:
        asyncio.run(_backfill(direct_url, mid, Midway(admin, app, alias, a, mid, judged, figures) if judged else None))
    finally:
        stop.set()
        writer.join(30)
    ask(app, alias, a, "during (dual_write: reads still on the source)", questions)
    m = admin.call("POST", f"/migrations/{mid}/verify", {})
    m = m.get("migration", m) if isinstance(m, dict) else {}
    v = m.get("verification") or {}
    c = v.get("counts") or {}
    print(f"\nverify: {'clean' if v.get('clean') else 'NOT clean'} ({c.get('source', '?')} source points, "
          f"{c.get('target', '?')} target, {c.get('missing', 0)} missing, {c.get('extra', 0)} extra, "
          f"{c.get('stale', 0)} stale) -> phase {m.get('phase')}")
    for step in ("switch_reads", "switch_writes", "complete"):
        admin.call("POST", f"/migrations/{mid}/transition", {"name": step})
        print(f"{step}: done")
    ask(app, alias, b, "after the migration", questions)
    if judged:
        figures.after = quality.mean_ndcg(app, alias, b.id, judged)
        print(f"\nquality over {len(judged.queries)} judged questions (through the proxy):")
        print("\n".join(figures.lines(a.id, b.id)))
    app.close()
    direct.close()


def _writer(app: QdrantClient, alias: str, a: ModelSpec, n: int, stop: threading.Event) -> None:
    """The application: upserts, deletes and payload updates through the proxy all along. A
    write the proxy refuses (503 while it cannot read its state: it never guesses whether to
    mirror) is retried after a pause, as a client should."""
    rng, k, refused = random.Random(5), 0, 0
    while not stop.is_set():
        k += 1
        i = rng.randrange(n)
        try:
            _write(app, alias, a, n, k, i)
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            refused += 1
            reason = str(getattr(exc, "content", b"") or exc)[:160]
            print(f"\n  (the app's write {k} was refused and will be retried: {reason})")
            stop.wait(0.5)
            continue
        stop.wait(0.05)
    print(f"\nthe app wrote {k - refused} times during the backfill ({refused} refused and retried)")


def _write(app: QdrantClient, alias: str, a: ModelSpec, n: int, k: int, i: int) -> None:
    if k % 3 == 0:
        app.delete(alias, models.PointIdsList(points=[n + k - 3]), wait=True)
    elif k % 3 == 1:
        text = f"note {k}: written during the migration"
        app.upsert(alias, [models.PointStruct(id=n + k, vector=models.Document(text=text, model=a.id),
                                              payload={"name": f"note{k}", "text": text, "doc_id": f"note{k}"})])
    else:
        app.set_payload(alias, {"touched": k}, points=[i])


class Midway:
    """Half-way through the backfill: pause it (throttle 0), measure nDCG@10 of the source-only
    and the merged read through the proxy, put reads back on the source, resume."""

    def __init__(self, admin: AdminClient, app: QdrantClient, alias: str, a: ModelSpec, mid: str,
                 judged: quality.Judged, figures: quality.Figures) -> None:
        self.admin, self.app, self.alias, self.a, self.mid = admin, app, alias, a, mid
        self.judged, self.figures = judged, figures

    def pause_and_measure(self) -> None:
        m = f"/migrations/{self.mid}"
        self.admin.call("POST", m + "/throttle", {"points_per_second": 0})
        time.sleep(1.0)  # the daemon reads its knobs every 0.3 s; a batch in flight lands
        self.figures.midway_source = quality.mean_ndcg(self.app, self.alias, self.a.id, self.judged)
        self.admin.call("POST", m + "/read-mode", {"mode": "merged"})
        time.sleep(1.0)  # the proxy's state cache (0.2 s) picks the read mode up
        self.figures.midway = quality.mean_ndcg(self.app, self.alias, self.a.id, self.judged)
        self.admin.call("POST", m + "/read-mode", {"mode": "source"})

    def resume(self, share: float) -> None:
        self.figures.midway_share = share
        self.admin.call("POST", f"/migrations/{self.mid}/throttle", {"unthrottled": True})
        print(f"\n  (paused at {share:.0%}: nDCG@{quality.K} source only {self.figures.midway_source:.3f}, "
              f"merged {self.figures.midway:.3f}; resumed)")


async def _backfill(url: str, mid: str, midway: Midway | None) -> None:
    store = StateStore.connect(url)
    daemon = Daemon(store, mid, DaemonConfig(batch_size=64, refresh=0.3, progress_interval=3600))
    task = asyncio.ensure_future(daemon.run(once=True))
    last, last_step, total = "", -1, 0
    try:
        while not task.done():
            await asyncio.sleep(0.5)
            leases = await daemon.leases()
            done = sum(lease.copied for lease in leases)
            total = max(done, daemon.m.counter("backfill_total") if daemon.m else 0)
            text = progress.line(mid, done, total, daemon.rate_window.rate(), *daemon.status(daemon.clock()))
            if midway and total and 2 * done >= total and midway.figures.midway_share is None:
                await asyncio.to_thread(midway.pause_and_measure)
                copied = sum(lease.copied for lease in await daemon.leases())
                await asyncio.to_thread(midway.resume, copied / max(total, 1))
            step = 10 * done // max(total, 1)  # not a terminal: one line per 10 %
            if text != last and (sys.stdout.isatty() or step != last_step):
                last, last_step = text, step
                sys.stdout.write(("\r" + text.ljust(100)) if sys.stdout.isatty() else text + "\n")
                sys.stdout.flush()
        stats = await task
        total = max(total, stats.written)
        print(("\r" if sys.stdout.isatty() else "") + progress.line(mid, total, total, 0, "done", "").ljust(100))
        print(f"backfill done: {stats.written} points re-embedded, {stats.redone} redone after a concurrent "
              f"write, {stats.vanished} deleted meanwhile, {stats.no_text} without text")
    finally:
        if not task.done():
            task.cancel()
        await store.close()
