"""The comparable view of a collection's config, and drift as a diff (pure).

:func:`view` reduces Qdrant's ``GET /collections/{c}`` result (plus the bound model from the
state store) to what a schema owns: vectors, sparse vectors, HNSW, quantization, optimizers,
payload indexes (field -> type) and the bound model. Counts, status and segment numbers are left
out: they change with every write and are not schema. :func:`diff` lists differences as
``path: recorded -> live`` lines, empty when the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: optimizer fields Qdrant reports that a schema sets (the rest are runtime defaults)
_OPTIMIZER_KEYS = ("deleted_threshold", "vacuum_min_vector_number", "default_segment_number",
                   "max_segment_size", "memmap_threshold", "indexing_threshold")


def view(info: Mapping[str, Any] | None, model: str | None = None) -> dict[str, Any] | None:
    """The schema view of a collection-info result (``None`` when the collection is absent)."""
    if info is None:
        return None
    cfg = info.get("config") or {}
    params = cfg.get("params") or {}
    vectors = params.get("vectors")
    if isinstance(vectors, Mapping) and "size" in vectors:
        vectors = {"": vectors}
    schema = info.get("payload_schema") or {}
    opt = cfg.get("optimizer_config") or {}
    return {
        "vectors": _clean(vectors or {}),
        "sparse_vectors": _clean(params.get("sparse_vectors") or {}),
        "hnsw": _clean(cfg.get("hnsw_config") or {}),
        "quantization": _clean(cfg.get("quantization_config")),
        "optimizers": _clean({k: opt.get(k) for k in _OPTIMIZER_KEYS if k in opt}),
        "indexes": {k: (v.get("data_type") if isinstance(v, Mapping) else v)
                    for k, v in sorted(schema.items())},
        "model": model,
    }


def _clean(value: Any) -> Any:
    """Drop ``None`` members recursively, so an absent and a null field compare equal."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):  # an empty mapping has no leaves: {} and absent agree
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "$": value}


def diff(recorded: Any, live: Any) -> list[str]:
    """Lines ``path: recorded -> live`` for every leaf that differs (``(absent)`` for missing)."""
    if recorded is None and live is None:
        return []
    if recorded is None or live is None:
        return [f"collection: {'(absent)' if recorded is None else 'present'} -> "
                f"{'(absent)' if live is None else 'present'}"]
    a, b = _flat(recorded), _flat(live)
    out = []
    for path in sorted(set(a) | set(b)):
        if a.get(path, _ABSENT) != b.get(path, _ABSENT):
            out.append(f"{path}: {_show(a.get(path, _ABSENT))} -> {_show(b.get(path, _ABSENT))}")
    return out


_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else repr(value)
