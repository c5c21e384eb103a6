"""``switchyard migrate adapter`` and ``switchyard migrate eval`` (issue 15).

Both talk to the state store through ``--url`` (a Switchyard proxy or Qdrant, like ``switchyard
doctor``; the proxy admits the tool to ``_switchyard`` with the admin key, or from loopback).

* ``adapter ID``: shows the migration's query adapters and score calibration (kind, dimensions,
  held-out fit, whether each is good enough to be used); ``--fit`` refits them from the
  backfill's sample reservoir; ``--off`` / ``--on`` turns their use in merged reads off or on.
* ``eval ID --queries FILE``: each line of FILE is ``{"text": ..., "relevant": {doc key:
  grade}}`` (``relevant`` optional). Every query is embedded with model A and model B, the
  source is searched with A's vector, the target with B's, and the merged answer is read
  through ``--url`` (an inference object naming model B, so the proxy merges); the ranked doc
  keys go to :func:`eval_gate.evaluate`. The verdict is printed, stored (kind ``eval``, key the
  migration id, with its time) and sets the exit status (0 GO, 1 NO-GO).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import TYPE_CHECKING, Any

from switchyard.proxy.secret_sources import add_secret_argument

if TYPE_CHECKING:  # numpy and the client load when a command runs (proxy/command_loading.py)
    from switchyard.proxy.migration import eval_gate

DEFAULT_URL = "http://localhost:6333"


def register_into(msub: Any) -> None:
    """Add ``adapter`` and ``eval`` to ``switchyard migrate``'s subcommands."""
    a = msub.add_parser("adapter", help="show, refit or turn off the query adapter and score calibration")
    _common(a)
    a.add_argument("--fit", action="store_true", help="refit from the backfill's sample reservoir")
    onoff = a.add_mutually_exclusive_group()
    onoff.add_argument("--off", action="store_true", help="stop using them in merged reads")
    onoff.add_argument("--on", action="store_true", help="use them again")
    a.set_defaults(handler=_adapter)
    e = msub.add_parser("eval", help="compare source, target and merged answers: GO / NO-GO before cutover")
    _common(e)
    e.add_argument("--queries", required=True, metavar="FILE.jsonl",
                   help='one {"text": ..., "relevant": {doc key: grade}} per line')
    e.add_argument("--k", type=int, default=10)
    e.add_argument("--min-overlap", type=float, help="GO needs the overlap@k CI low at least this (default 0.2)")
    e.add_argument("--max-ndcg-drop", type=float, help="GO allows nDCG@k to drop at most this (default 0.02)")
    e.set_defaults(handler=_eval)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="migration id")
    p.add_argument("--url", default=os.environ.get("SWITCHYARD_URL", DEFAULT_URL),
                   help="Switchyard proxy or Qdrant REST URL (env SWITCHYARD_URL)")
    add_secret_argument(p, "--api-key", env="SWITCHYARD_API_KEY", help="Qdrant API key")
    add_secret_argument(p, "--admin-key", env="SWITCHYARD_ADMIN_KEY", help="the proxy's admin key")
    p.add_argument("--json", action="store_true")


def _store(args: argparse.Namespace) -> Any:
    from switchyard.proxy.state.store import StateStore

    return StateStore.connect(args.url, api_key=args.api_key, admin_key=args.admin_key)


def _adapter(args: argparse.Namespace) -> int:
    from switchyard.proxy.dataplane import adapter_store

    async def go() -> dict[str, Any]:
        store = _store(args)
        try:
            if args.fit:
                rec = await adapter_store.refit(store, args.id)
            elif args.off or args.on:
                rec = await adapter_store.set_enabled(store, args.id, bool(args.on))
            else:
                env = await store.get(adapter_store.KIND, args.id)
                rec = env.data if env is not None else {"enabled": True, "pairs": 0,
                                                        "reason": "not fitted yet (run with --fit)"}
            return adapter_store.summary(rec)
        finally:
            await store.close()

    out = asyncio.run(go())
    print(json.dumps(out, indent=2, default=str) if args.json else render_adapter(out))
    return 0


def render_adapter(s: dict[str, Any]) -> str:
    lines = [f"adapter: {'on' if s.get('enabled', True) else 'OFF'}; {s.get('pairs') or 0} sample pairs; "
             f"{s.get('reason') or ''}"]
    for side, label in (("to_target", "A -> B (raw A query vectors on the target)"),
                        ("to_source", "B -> A (raw B query vectors on the source)")):
        ad = s.get(side)
        if ad is None:
            lines.append(f"  {label}: none")
            continue
        fit = ad["fit"]
        lines.append(f"  {label}: {ad['kind']} {ad['dims_in']} -> {ad['dims_out']}, held-out cosine "
                     f"{fit['mean_cosine']:.3f}, top-1 {fit['top1']:.3f} over {fit['held_out']} pairs"
                     f"{'' if ad['used'] else ' (too weak: not used)'}")
    cal = s.get("calibration")
    lines.append("  calibration: none" if cal is None else
                 f"  calibration: held-out Spearman {cal['spearman']:.3f} over {cal['pairs']} score pairs"
                 f"{'' if cal['used'] else ' (too weak: source hits placed by rank)'}")
    return "\n".join(lines)


def _eval(args: argparse.Namespace) -> int:
    from switchyard.proxy.migration import eval_gate

    queries = [json.loads(line) for line in open(args.queries, encoding="utf-8") if line.strip()]
    base = eval_gate.Thresholds()
    thresholds = eval_gate.Thresholds(
        args.k, base.min_overlap if args.min_overlap is None else args.min_overlap,
        base.max_ndcg_drop if args.max_ndcg_drop is None else args.max_ndcg_drop)
    verdict = asyncio.run(_run_eval(args, queries, thresholds))
    out = verdict.to_dict()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['verdict']} over {out['queries']} queries")
        for r in out["reasons"]:
            print(f"  - {r}")
        for name, iv in out["metrics"].items():
            print(f"  {name}: {iv['mean']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]")
    return 0 if verdict.go else 1


async def _run_eval(args: argparse.Namespace, queries: list[dict[str, Any]],
                    thresholds: eval_gate.Thresholds) -> eval_gate.Verdict:
    from qdrant_client import AsyncQdrantClient, models

    from switchyard.proxy.migration import eval_gate

    from switchyard.proxy.embedders import make_embedder
    from switchyard.proxy.migration.record import Migration
    from switchyard.proxy.registry import get_model

    store = _store(args)
    direct = AsyncQdrantClient(url=args.url, api_key=args.api_key, check_compatibility=False)
    try:
        m = Migration.from_envelope(await store.require(Migration.KIND, args.id))
        spec_a, spec_b = await get_model(store, m.model_a), await get_model(store, m.model_b)
        texts = [str(q["text"]) for q in queries]
        vectors = []
        for spec in (spec_a, spec_b):
            embedder = make_embedder(spec)
            try:
                vectors.append(await embedder.embed(texts))
            finally:
                await embedder.aclose()
        k, key = thresholds.k, m.doc_key

        def keys(points: Any) -> list[str]:
            return [str((p.payload or {}).get(key, p.id)) for p in points]

        answers = []
        for i, q in enumerate(queries):
            src = await direct.query_points(m.source, query=list(vectors[0][i]), limit=k, with_payload=[key])
            tgt = await direct.query_points(m.target, query=list(vectors[1][i]), limit=k, with_payload=[key])
            # the low-level API sends the Document as is (no client-side inference): the proxy embeds
            merged = await direct.http.search_api.query_points(m.logical, query_request=models.QueryRequest(
                query=models.Document(text=str(q["text"]), model=spec_b.id), limit=k, with_payload=[key]))
            assert merged.result is not None
            judged = {str(d): float(g) for d, g in (q.get("relevant") or {}).items()}
            answers.append(eval_gate.Answers(keys(src.points), keys(tgt.points), keys(merged.result.points), judged))
        verdict = eval_gate.evaluate(answers, thresholds)
        await store.upsert(eval_gate.KIND, m.id, {**verdict.to_dict(), "at": time.time(),
                                                  "thresholds": thresholds.to_dict()})
        return verdict
    finally:
        await direct.close()
        await store.close()
