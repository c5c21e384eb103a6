"""Approximate secondary points: a mirrored upsert without text, mapped through the adapter.

A point written through the proxy without text in the migration's text field cannot be embedded
with model B. Without more, the mirror leaves it out of the target and puts its id in the repair
log (the backfill embeds it once a text fetcher finds its text). When the migration has a
*usable* A -> B query adapter (``adapter_store``: fitted on the backfill's sample reservoir,
enabled, held-out mean cosine at least ``adapter_store.MIN_COSINE``), the target gets the
adapter's image of the point's A vector instead, so the point is searchable on the target at
once, and its payload carries :data:`~switchyard.proxy.state.records.META_APPROXIMATE` ``true``.
The id still goes to the repair log (:data:`REASON`): the backfill re-embeds it when its text can
be fetched, and verification counts approximate points apart and refuses ``verified`` while
any is left (``backfill/verify.py``).

Only towards the target of a ``reembed`` migration: the backfill writes only the target, so an
approximate *source* point (writes switched, the source secondary) could never be replaced;
split, copy and in-place kinds keep their own paths. No usable adapter, a vector of the wrong
dimension, or a point without the bound vector: the point stays on today's path (repair log,
no target point).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from switchyard.proxy.dataplane.adapter import Adapter
from switchyard.proxy.dataplane.adapter_store import Loaded
from switchyard.proxy.migration.kinds import DEFAULT_KIND
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.modelspec import ModelSpec

#: The repair-log reason of an id whose target point holds an adapter image.
REASON = "approximate vector via adapter; re-embed when text is available"


def adapter_for(m: Migration, to_target: bool, spec: ModelSpec, loaded: Loaded | None) -> Adapter | None:
    """The A -> B adapter a mirrored upsert without text may use, or ``None`` (pure)."""
    if not to_target or m.kind != DEFAULT_KIND or m.copy_vectors or loaded is None:
        return None
    ad = loaded.usable_adapter("target")
    if ad is None or (spec.dimensions is not None and ad.dims_out != spec.dimensions):
        return None
    return ad


def bound_vector(vector: Any, name: str) -> list[float] | None:
    """The dense vector named ``name`` (``""``: the unnamed one) of a REST record's ``vector``."""
    v = vector.get(name) if isinstance(vector, Mapping) else (vector if not name else None)
    if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) for x in v):
        return None
    return v


def images(ad: Adapter, vectors: Sequence[list[float] | None]) -> list[np.ndarray | None]:
    """The adapter's image of each vector of its input dimension (``None`` for the others)."""
    rows = [i for i, v in enumerate(vectors) if v is not None and len(v) == ad.dims_in]
    out: list[np.ndarray | None] = [None] * len(vectors)
    if rows:
        mapped = ad.apply(np.asarray([vectors[i] for i in rows], dtype=np.float32))
        for i, row in zip(rows, mapped):
            out[i] = np.asarray(row, dtype=np.float32)
    return out
