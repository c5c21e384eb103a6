"""``switchyard embed``: try a model spec directly, and the embed/drift logic the registry CLI uses.

``embed_report(spec, texts)`` embeds texts once and reports shape, norms and throughput;
``check_drift(spec)`` recomputes the fingerprint of a stored spec and compares. Both are what
``switchyard models embed|check`` (``switchyard.proxy.registry_command``) call for registered models;
``switchyard embed --spec-json '{...}' TEXT...`` does the same for a spec given inline, with no
state store involved::

    switchyard embed --spec-json '{"id": "h", "provider": "hashing", "model": "demo", "dimensions": 64}' "hello"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from switchyard.proxy.embedders.base import Embedder, make_embedder
from switchyard.proxy.embedders.batching import approx_tokens
from switchyard.proxy.embedders.fingerprint import fingerprint
from switchyard.proxy.errors import BadRequest, ConfigError
from switchyard.proxy.modelspec import ModelSpec


async def embed_report(spec: ModelSpec, texts: Sequence[str]) -> dict[str, Any]:
    """Embed ``texts`` once with ``spec``'s provider: shape, norms, time, throughput, cost estimate."""
    embedder = make_embedder(spec)
    try:
        return await report_for(embedder, texts)
    finally:
        await embedder.aclose()


async def report_for(embedder: Embedder, texts: Sequence[str]) -> dict[str, Any]:
    """:func:`embed_report` with an embedder the caller owns (and closes)."""
    if not texts:
        raise BadRequest("give at least one text to embed")
    spec = embedder.spec
    started = time.perf_counter()
    vectors = await embedder.embed(list(texts))
    seconds = time.perf_counter() - started
    norms = np.linalg.norm(vectors, axis=1)
    tokens = sum(approx_tokens(t) for t in texts)
    report: dict[str, Any] = {
        "model": spec.id,
        "provider": spec.provider,
        "shape": list(vectors.shape),
        "dtype": str(vectors.dtype),
        "norm_min": round(float(norms.min()), 6),
        "norm_max": round(float(norms.max()), 6),
        "seconds": round(seconds, 4),
        "texts_per_s": round(len(texts) / seconds, 1) if seconds > 0 else None,
        "approx_tokens": tokens,
        "head": [round(float(x), 5) for x in vectors[0, :4]],
    }
    if spec.price_per_million_tokens is not None:
        report["approx_cost"] = round(tokens * spec.price_per_million_tokens / 1e6, 8)
    return report


async def check_drift(spec: ModelSpec) -> tuple[bool, str, str]:
    """``(unchanged, stored fingerprint, recomputed fingerprint)`` for a stored spec.

    Raises :class:`BadRequest` when the spec has no stored fingerprint (registered without one):
    there is nothing to compare, and answering "unchanged" would be a guess.
    """
    if spec.fingerprint is None:
        raise BadRequest(f"model {spec.id!r} has no stored fingerprint, so drift cannot be checked")
    embedder = make_embedder(spec)
    try:
        current = await fingerprint(embedder)
    finally:
        await embedder.aclose()
    return current == spec.fingerprint, spec.fingerprint, current


def handle(args: argparse.Namespace) -> int:
    """``switchyard embed``: embed the texts with the inline spec and print the report."""
    spec = load_spec(args.spec_json, args.spec_file)
    report = asyncio.run(_run(spec, args.texts, args.fingerprint, args.vectors))
    print(json.dumps(report, indent=2))
    return 0


def load_spec(spec_json: str | None, spec_file: Path | None) -> ModelSpec:
    """The spec from inline JSON or a file; problems are :class:`ConfigError` (exit code 2)."""
    try:
        text = spec_json if spec_json is not None else Path(str(spec_file)).read_text()
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the model spec: {exc}") from exc
    return ModelSpec.from_dict(data, error=ConfigError)


async def _run(spec: ModelSpec, texts: list[str], with_fingerprint: bool, with_vectors: bool) -> dict[str, Any]:
    embedder = make_embedder(spec)
    try:
        report = await report_for(embedder, texts)
        if with_fingerprint:
            report["fingerprint"] = await fingerprint(embedder)
        if with_vectors:
            report["vectors"] = [[round(float(x), 6) for x in row] for row in await embedder.embed(texts)]
    finally:
        await embedder.aclose()
    return report
