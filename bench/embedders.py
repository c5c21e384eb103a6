"""Embedding throughput (texts/second) of each provider, by text length and batch size.

Providers: hashing (384-d), local paraphrase-MiniLM-L3-v2 (fp32), local all-MiniLM-L6-v2 (int8),
and the OpenAI-compatible HTTP client against tests/openai_stub.py over loopback (the stub runs in
the same process and event loop and serves hashing vectors, so that row measures the client's
batching, JSON and HTTP overhead, not a model). Texts come from the pydocs-faq data set: the FAQ
questions as short sentences, and document sections cut to their first 100 words as passages.

    python bench/embedders.py            # up to 256 texts per cell, batch sizes 16/64/256 (< 3 min)
    python bench/embedders.py --quick    # up to 64 texts per cell, batch sizes 16/64

Each cell is a fresh embedder with ``max_batch`` = the batch size: a warm-up call, then timed
``embed`` calls of ``max(batch, 64)`` texts until the texts or the cell's time budget
(``--cell-seconds``, 6 s) run out. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from openai_stub import OpenAIStub  # noqa: E402

from switchyard.proxy.embedders import Embedder, make_embedder  # noqa: E402
from switchyard.proxy.modelspec import ModelSpec  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "pydocs-faq"
PASSAGE_WORDS = 100


def load_texts(data: Path, count: int) -> dict[str, list[str]]:
    """``{"short": FAQ questions, "passage": ~100-word sections}``, ``count`` of each (cycled)."""
    queries = [json.loads(line)["text"] for line in (data / "queries.jsonl").open()]
    passages = []
    for line in (data / "corpus.jsonl").open():
        words = json.loads(line)["text"].split()
        if len(words) >= PASSAGE_WORDS:
            passages.append(" ".join(words[:PASSAGE_WORDS]))
        if len(passages) >= count:
            break
    return {"short": _cycle(queries, count), "passage": _cycle(passages, count)}


def _cycle(items: list[str], count: int) -> list[str]:
    return [items[i % len(items)] for i in range(count)]


def specs(stub_url: str) -> dict[str, Callable[[int], ModelSpec]]:
    """Provider label -> spec for a batch size."""
    return {
        "hashing": lambda b: ModelSpec(id="bench-hash", provider="hashing", model="bench", dimensions=384, max_batch=b),
        "local L3 (fp32)": lambda b: ModelSpec(
            id="bench-l3", provider="local", model="pkg:paraphrase-MiniLM-L3-v2", dimensions=384, max_batch=b),
        "local L6 (int8)": lambda b: ModelSpec(
            id="bench-l6", provider="local", model="pkg:all-MiniLM-L6-v2-int8", dimensions=384, max_batch=b),
        "openai stub (loopback)": lambda b: ModelSpec(
            id="bench-http", provider="openai", model="bench", dimensions=384, base_url=stub_url, max_batch=b,
            max_concurrency=4),
    }


async def time_cell(embedder: Embedder, texts: list[str], batch: int, budget_s: float) -> float:
    """Texts/second over ``texts``, in calls of ``max(batch, 64)`` texts, stopping early after ``budget_s``.

    Calls of several batches let the HTTP client run its batches concurrently as it would in a
    backfill; the time budget keeps slow cells (L6 on long passages, a loaded machine) bounded.
    """
    await embedder.embed(texts[:8])  # warm-up: model load, first-run allocations
    call = max(batch, 64)
    done = 0
    started = time.perf_counter()
    while done < len(texts) and (done == 0 or time.perf_counter() - started < budget_s):
        chunk = texts[done:done + call]
        await embedder.embed(chunk)
        done += len(chunk)
    return done / (time.perf_counter() - started)


async def run(count: int, batches: list[int], data: Path, budget_s: float) -> list[tuple[str, str, list[float]]]:
    texts = load_texts(data, count)
    stub = OpenAIStub(default_dimensions=384)
    rows: list[tuple[str, str, list[float]]] = []
    try:
        for label, make_spec in specs(await stub.start()).items():
            for kind, items in texts.items():
                rates = []
                for batch in batches:
                    embedder = make_embedder(make_spec(batch))
                    try:
                        rates.append(await time_cell(embedder, items, batch, budget_s))
                    finally:
                        await embedder.aclose()
                rows.append((label, kind, rates))
                print(f"  {label:<24} {kind:<8} " + "  ".join(f"{r:9.0f}" for r in rates), file=sys.stderr)
    finally:
        await stub.stop()
    return rows


def table(rows: list[tuple[str, str, list[float]]], batches: list[int]) -> str:
    head = "| provider | texts | " + " | ".join(f"batch {b}" for b in batches) + " |"
    rule = "| --- | --- | " + " | ".join("---:" for _ in batches) + " |"
    body = [f"| {label} | {kind} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |" for label, kind, rates in rows]
    return "\n".join([head, rule, *body])


def ratios(rows: list[tuple[str, str, list[float]]]) -> list[str]:
    """Best-batch throughput of L6 relative to L3, per text kind (the models one migrates between)."""
    best = {(label, kind): max(rates) for label, kind, rates in rows}
    return [f"L6 int8 / L3 fp32 on {kind}: {best[('local L6 (int8)', kind)] / best[('local L3 (fp32)', kind)]:.2f}x"
            for kind in ("short", "passage")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 texts per cell, batch sizes 16 and 64")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the pydocs-faq directory")
    parser.add_argument("--cell-seconds", type=float, default=6.0,
                        help="stop a cell after the call that passes this many seconds (default 6)")
    args = parser.parse_args()
    count, batches = (64, [16, 64]) if args.quick else (256, [16, 64, 256])
    started = time.perf_counter()
    rows = asyncio.run(run(count, batches, args.data, args.cell_seconds))
    print(f"\nTexts/second, up to {count} texts or ~{args.cell_seconds:g} s per cell "
          f"(short: FAQ questions; passage: first {PASSAGE_WORDS} words of a section).\n")
    print(table(rows, batches))
    print("\n" + "\n".join(ratios(rows)))
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
