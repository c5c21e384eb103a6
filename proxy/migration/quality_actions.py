"""The work behind ``switchyard migrate adapter`` and ``migrate eval`` (parsers: quality_command).

Imported only when one of those commands runs; see :mod:`quality_command` for what each does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchyard.proxy.migration import eval_gate


def _store(args: argparse.Namespace) -> Any:
    from switchyard.proxy.state.store import StateStore

    return StateStore.connect(args.url, api_key=args.api_key, admin_key=args.admin_key)


def adapter(args: argparse.Namespace) -> int:
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
                                                        "reason": "no adapter record: not fitted yet (run with --fit), or removed when the migration ended"}
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


def evaluate(args: argparse.Namespace) -> int:
    from switchyard.proxy.migration import eval_gate

    if args.queries:
        queries = [json.loads(line) for line in open(args.queries, encoding="utf-8") if line.strip()]
    else:
        queries = asyncio.run(_sampled(args))
        if not queries:
            print(f"no queries for migration {args.id}: pass --queries FILE.jsonl, or let shadow reads "
                  f"run first (`switchyard migrate read-mode {args.id} shadow`) and send inference-object "
                  "queries (Documents) to the logical name; their texts are sampled", file=sys.stderr)
            return 2
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


async def _sampled(args: argparse.Namespace) -> list[dict[str, Any]]:
    from switchyard.proxy.dataplane.query_sample import sampled

    store = _store(args)
    try:
        return [{"text": t} for t in await sampled(store, args.id, args.sample)]
    finally:
        await store.close()


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
