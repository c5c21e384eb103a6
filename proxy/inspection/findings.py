"""What ``switchyard doctor`` finds in a collection: the pure half (points in, report out).

A collection about to be migrated, or one that has been written to for a while, can hold what
no single write shows: points nobody stamped, points embedded by two models in one index (a
mixed index: their scores are not comparable), vectors that do not fit the bound model (wrong
norm for a normalising model, another model's fingerprint), zero vectors (cosine is undefined
for them), exact duplicates, and points without the text a re-embedding needs.

:class:`Inspector` takes points as they are scrolled (id, payload, the bound vector as a numpy
array or ``None``) and keeps only counts, a few sample ids per finding and one digest per
vector for duplicates, so a full scan of a large collection runs in bounded memory (the
duplicate table holds 16 bytes per distinct vector). :meth:`Inspector.report` is the result:
each :class:`Finding` with its count, sample ids, severity (``blocks`` a re-embedding migration,
``degrades`` answers, ``info``) and what to do about it. No I/O, no clock: table-tested.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import META_FINGERPRINT, META_MODEL_ID

SAMPLE_IDS = 5
#: A normalising model's vectors have norm 1; allow float32 rounding and quantization.
NORM_TOLERANCE = 1e-2

BLOCKS, DEGRADES, INFO = "blocks", "degrades", "info"


@dataclass(frozen=True, slots=True)
class Point:
    """One scrolled point: its id, payload and the bound vector (``None``: it has none)."""

    id: Any
    payload: Mapping[str, Any]
    vector: np.ndarray | None


@dataclass(slots=True)
class Finding:
    code: str
    title: str
    severity: str
    advice: str
    count: int = 0
    sample_ids: list[Any] = field(default_factory=list)

    def add(self, point_id: Any) -> None:
        self.count += 1
        if len(self.sample_ids) < SAMPLE_IDS:
            self.sample_ids.append(point_id)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "title": self.title, "severity": self.severity, "count": self.count,
                "sample_ids": list(self.sample_ids), "advice": self.advice}


@dataclass(frozen=True, slots=True)
class Report:
    collection: str
    model_id: str | None
    points: int
    complete: bool  # every point was read (not cut by --limit)
    models: Mapping[str, int]  # embedding_model_id -> points carrying it
    findings: tuple[Finding, ...]

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == BLOCKS and f.count)

    def to_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "model": self.model_id, "points": self.points,
                "complete": self.complete, "models": dict(self.models),
                "findings": [f.to_dict() for f in self.findings if f.count]}


def _findings(spec: ModelSpec | None, text_field: str) -> dict[str, Finding]:
    model = f"`{spec.id}`" if spec else "the bound model"
    table = [
        ("unstamped", "points without embedding metadata", DEGRADES,
         f"write them through the proxy (it stamps {model}), or re-embed them with a migration; "
         "until then nobody can tell which model embedded them"),
        ("other_model", "points stamped by another model than the bound one", DEGRADES,
         f"a mixed index: their scores are not comparable with {model}'s; re-embed them "
         "(`switchyard migrate plan ... --to-model` the bound model) or rebind the collection"),
        ("mixed_models", "more than one model's metadata in this collection", DEGRADES,
         "searches rank vectors of different models against each other; migrate to one model"),
        ("wrong_fingerprint", "points whose fingerprint is not the bound model's", DEGRADES,
         "the model behind the name changed (see `switchyard models check`); re-embed them"),
        ("wrong_norm", "vectors whose norm does not fit the bound model", DEGRADES,
         f"{model} normalises its vectors; these were embedded otherwise (another model, or a "
         "client that did not normalise): re-embed them"),
        ("wrong_size", "vectors whose size is not the bound model's", BLOCKS,
         "these cannot have come from the bound model; re-embed them"),
        ("zero_vector", "zero vectors", DEGRADES,
         "cosine similarity is undefined for them and they never match; re-embed or delete them"),
        ("no_vector", "points without the bound vector", DEGRADES,
         "they are invisible to similarity search; re-embed them"),
        ("duplicate", "exact duplicates of another point's vector", INFO,
         "the same vector more than once: repeated documents, or an upsert under new ids; "
         "deduplicate if unintended (counted: every copy after the first)"),
        ("no_text", f"points without the text field `{text_field}`", BLOCKS,
         f"a re-embedding migration needs `{text_field}` on every point: add it, choose another "
         "--text-field, or use --copy-vectors (a schema-only migration)"),
    ]
    return {code: Finding(code, title, severity, advice) for code, title, severity, advice in table}


class Inspector:
    """Accumulates points into a :class:`Report` (module docstring)."""

    def __init__(self, collection: str, spec: ModelSpec | None, *, text_field: str = "text") -> None:
        self.collection = collection
        self.spec = spec
        self.text_field = text_field
        self.findings = _findings(spec, text_field)
        self.models: dict[str, int] = {}
        self.points = 0
        self._seen: set[bytes] = set()

    def add(self, points: Iterable[Point]) -> None:
        for point in points:
            self.points += 1
            self._metadata(point)
            self._vector(point)
            text = point.payload.get(self.text_field)
            if not isinstance(text, str) or not text.strip():
                self.findings["no_text"].add(point.id)

    def _metadata(self, point: Point) -> None:
        model = point.payload.get(META_MODEL_ID)
        if model is None:
            self.findings["unstamped"].add(point.id)
            return
        self.models[str(model)] = self.models.get(str(model), 0) + 1
        if self.spec is None:
            return
        if model != self.spec.id:
            self.findings["other_model"].add(point.id)
        elif (fp := point.payload.get(META_FINGERPRINT)) is not None and self.spec.fingerprint \
                and fp != self.spec.fingerprint:
            self.findings["wrong_fingerprint"].add(point.id)

    def _vector(self, point: Point) -> None:
        vector = point.vector
        if vector is None:
            self.findings["no_vector"].add(point.id)
            return
        if self.spec is not None and vector.shape[0] != self.spec.dimensions:
            self.findings["wrong_size"].add(point.id)
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            self.findings["zero_vector"].add(point.id)
        elif self.spec is not None and self.spec.normalize and abs(norm - 1.0) > NORM_TOLERANCE:
            self.findings["wrong_norm"].add(point.id)
        digest = hashlib.blake2b(np.ascontiguousarray(vector, dtype=np.float32).tobytes(), digest_size=16).digest()
        if digest in self._seen:
            self.findings["duplicate"].add(point.id)
        else:
            self._seen.add(digest)

    def report(self, complete: bool = True) -> Report:
        if len(self.models) > 1:
            mixed = self.findings["mixed_models"]
            mixed.count = len(self.models)
            mixed.sample_ids = sorted(self.models)[:SAMPLE_IDS]
        return Report(self.collection, self.spec.id if self.spec else None, self.points, complete,
                      dict(self.models), tuple(self.findings.values()))


def render(report: Report) -> str:
    """The report as an operator reads it: one block per finding, worst first."""
    scope = "all" if report.complete else "the first"
    lines = [f"collection `{report.collection}`: {scope} {report.points} point(s) read; bound model: "
             f"{report.model_id or '(none)'}"]
    if report.models:
        lines.append("models named in payloads: " + ", ".join(f"{m} ({n})" for m, n in sorted(report.models.items())))
    order = {BLOCKS: 0, DEGRADES: 1, INFO: 2}
    found = sorted((f for f in report.findings if f.count), key=lambda f: order[f.severity])
    if not found:
        lines.append("no findings")
    for f in found:
        unit = "model(s)" if f.code == "mixed_models" else "point(s)"
        lines.append(f"[{f.severity}] {f.title}: {f.count} {unit} (e.g. {', '.join(map(str, f.sample_ids))})")
        lines.append(f"    {f.advice}")
    return "\n".join(lines)
