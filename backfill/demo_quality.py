"""The demo's quality figures: nDCG@10 of model A, of the merged read mid-way, and of model B.

When the pydocs-faq retrieval set (``../shared/datasets/pydocs-faq`` beside the clone, or
``switchyard demo --dataset DIR``: BEIR layout, see its README) is present, the demo loads its
documents instead of the stdlib docstrings: every judged document first, then others up to
``--points``, so each of the 171 questions can find its answer. The questions are asked through
the proxy with an inference object naming the model (the proxy embeds them), and nDCG@10 is
scored with :func:`switchyard.proxy.migration.eval_gate.ndcg` (the function ``migrate eval``
uses). Without the set the demo shows its answers but no figures, and says why.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import QdrantClient, models

from switchyard.proxy.migration.eval_gate import ndcg

K = 10
#: Where the set lives when the demo runs from a clone with ``shared/`` beside it.
DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "pydocs-faq"


@dataclass(frozen=True)
class Judged:
    """Questions (id -> text), judgements (question id -> {document id: grade}) and the
    documents to load, as (doc id, title, text)."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, float]]
    docs: list[tuple[str, str, str]]


def find_dataset(flag: str | None) -> tuple[Path | None, str]:
    """The data set folder to use, or ``None`` with the reason the figures are left out."""
    path = Path(flag) if flag else DEFAULT_DATASET
    needed = ("corpus.jsonl", "queries.jsonl", "qrels.tsv")
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        return None, f"no retrieval set at {path} (missing {', '.join(missing)}): quality figures left out"
    return path, ""


def load(path: Path, limit: int) -> Judged:
    """Read the BEIR files: every judged document first (so each question can be answered),
    then the others in file order, ``limit`` documents in all."""
    qrels: dict[str, dict[str, float]] = {}
    with (path / "qrels.tsv").open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if float(row["score"]) > 0:
                qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = float(row["score"])
    queries = {}
    with (path / "queries.jsonl").open() as f:
        for line in f:
            q = json.loads(line)
            if q["_id"] in qrels:
                queries[q["_id"]] = q["text"]
    wanted = {d for judged in qrels.values() for d in judged}
    first: list[tuple[str, str, str]] = []
    rest: list[tuple[str, str, str]] = []
    with (path / "corpus.jsonl").open() as f:
        for line in f:
            d = json.loads(line)
            (first if d["_id"] in wanted else rest).append((d["_id"], d.get("title") or d["_id"], d["text"][:1000]))
    return Judged(queries, qrels, (first + rest)[:max(limit, len(first))])


def mean_ndcg(client: QdrantClient, alias: str, model_id: str, judged: Judged) -> float:
    """Mean nDCG@10 of ``judged``'s questions asked through ``client`` with ``model_id``."""
    scores = []
    for qid, text in judged.queries.items():
        hits = client.query_points(alias, query=models.Document(text=text, model=model_id), limit=K,
                                   with_payload=["doc_id"]).points
        ranked = [str((h.payload or {}).get("doc_id")) for h in hits]
        scores.append(ndcg(ranked, judged.qrels[qid], K))
    return sum(scores) / len(scores) if scores else 0.0


@dataclass
class Figures:
    """What the demo measured; printed at the end."""

    before: float | None = None
    midway: float | None = None
    midway_source: float | None = None
    midway_share: float | None = None
    after: float | None = None

    def lines(self, a: str, b: str) -> list[str]:
        def f(x: float | None) -> str:
            return "not measured" if x is None else f"{x:.3f}"
        share = "" if self.midway_share is None else f" at {self.midway_share:.0%} backfilled"
        return [f"  nDCG@{K} model A ({a}), before:           {f(self.before)}",
                f"  nDCG@{K} merged read mid-way{share}: {f(self.midway)} (source only then: {f(self.midway_source)})",
                f"  nDCG@{K} model B ({b}), after:            {f(self.after)}"]


MidwayHook = Callable[[float], None]
