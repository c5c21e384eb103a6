"""The operations API a revision's ``upgrade(op)`` / ``downgrade(op)`` is written against.

Calling an operation only *records* it (:class:`Operation`) in the recorder's list: nothing talks
to Qdrant here, so a revision can be planned, printed (``--dry-run``, ``--plan-json``) and
checked before anything changes. :mod:`switchyard.proxy.schema.planner` turns the recorded
operations into steps with the exact Qdrant calls; the executor applies them.

Arguments are plain JSON values in Qdrant's REST shape (``{"size": 8, "distance": "Cosine"}``),
so what a revision says is what Qdrant receives. ``run_python(fn)`` is the one operation that is
code: ``fn(ctx)`` runs during the upgrade with a Qdrant client (see the executor); it must be
idempotent, since a run interrupted inside it repeats it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from switchyard.proxy.errors import BadRequest

#: every operation name, for docs and checks
NAMES = (
    "create_collection", "add_named_vector", "drop_named_vector", "change_vectors",
    "change_hnsw", "change_quantization", "create_index", "drop_index", "change_model",
    "split_collection", "rename_via_alias", "run_python", "drop_collection", "bind_model",
)


@dataclass(frozen=True)
class Operation:
    """One recorded operation: its name, the collection it acts on, and its arguments."""

    name: str
    collection: str
    args: Mapping[str, Any] = field(default_factory=dict)
    fn: Callable[[Any], Any] | None = None

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.name}({self.collection!r}{', ' if shown else ''}{shown})"


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or value.startswith("_switchyard"):
        raise BadRequest(f"{what} must be a non-empty name outside _switchyard, got {value!r}")
    return value


class Operations:
    """The ``op`` handed to ``upgrade(op)`` / ``downgrade(op)``: each method records one
    :class:`Operation` (validated here, so a bad revision fails at planning, not half-way)."""

    def __init__(self) -> None:
        self.recorded: list[Operation] = []

    def _add(self, _op: str, _collection: str, /, **args: Any) -> None:
        clean = {k: v for k, v in args.items() if v is not None}
        self.recorded.append(Operation(_op, _name(_collection, "collection"), clean))

    def create_collection(self, collection: str, vectors: Mapping[str, Any], *,
                          sparse_vectors: Mapping[str, Any] | None = None,
                          hnsw_config: Mapping[str, Any] | None = None,
                          quantization_config: Mapping[str, Any] | None = None,
                          optimizers_config: Mapping[str, Any] | None = None,
                          indexes: Mapping[str, Any] | None = None) -> None:
        """Create a collection (``vectors`` as Qdrant's ``vectors`` field) and its payload
        indexes (``{field: schema}``)."""
        self._add("create_collection", collection, vectors=dict(vectors),
                  sparse_vectors=_opt(sparse_vectors), hnsw_config=_opt(hnsw_config),
                  quantization_config=_opt(quantization_config),
                  optimizers_config=_opt(optimizers_config))
        for fname, schema in (indexes or {}).items():
            self.create_index(collection, fname, schema)

    def drop_collection(self, collection: str) -> None:
        """Delete a collection (data-deleting: a snapshot is taken first)."""
        self._add("drop_collection", collection)

    def add_named_vector(self, collection: str, name: str, *, size: int | None = None,
                         distance: str = "Cosine", sparse: bool = False,
                         model: str | None = None, text_field: str | None = None) -> None:
        """Add a named vector. Without ``model`` it is created empty (a cheap call); with
        ``model`` it is filled by an online migration of kind ``named-vector`` (dual write,
        backfill from ``text_field``, verify, switch, complete)."""
        if not sparse and (not isinstance(size, int) or size <= 0):
            raise BadRequest(f"add_named_vector {name!r}: a dense vector needs size > 0")
        self._add("add_named_vector", collection, name=_name(name, "vector name"),
                  size=None if sparse else size, distance=None if sparse else distance,
                  sparse=sparse or None, model=model, text_field=text_field)

    def drop_named_vector(self, collection: str, name: str) -> None:
        """Delete a named vector and its values (data-deleting: a snapshot is taken first)."""
        self._add("drop_named_vector", collection, name=_name(name, "vector name"))

    def change_vectors(self, collection: str, vectors: Mapping[str, Any]) -> None:
        """Change per-vector parameters Qdrant updates in place (``on_disk``, ``hnsw_config``,
        ``quantization_config``); a change of size or distance is a new layout: use
        ``change_model`` or ``add_named_vector`` instead."""
        for vname, params in vectors.items():
            bad = sorted(set(params) & {"size", "distance", "multivector_config", "datatype"})
            if bad:
                raise BadRequest(f"change_vectors {vname!r}: {', '.join(bad)} cannot change in "
                                 "place; add a named vector or change the model (a migration)")
        self._add("change_vectors", collection, vectors={k: dict(v) for k, v in vectors.items()})

    def change_hnsw(self, collection: str, **hnsw: Any) -> None:
        """Change the collection's HNSW parameters (``m``, ``ef_construct``, ...)."""
        self._add("change_hnsw", collection, hnsw_config=dict(hnsw))

    def change_quantization(self, collection: str, config: Mapping[str, Any] | None) -> None:
        """Set the quantization config (Qdrant's ``quantization_config``), ``None`` disables it."""
        self._add("change_quantization", collection,
                  quantization_config=dict(config) if config is not None else "Disabled")

    def create_index(self, collection: str, field_name: str, schema: Any) -> None:
        """Create a payload index (cheap, applied directly)."""
        self._add("create_index", collection, field_name=_name(field_name, "field"),
                  field_schema=schema)

    def drop_index(self, collection: str, field_name: str) -> None:
        self._add("drop_index", collection, field_name=_name(field_name, "field"))

    def bind_model(self, collection: str, model: str, *, vector: str = "",
                   enforce: bool = False) -> None:
        """Bind the collection's vector (``""``: the unnamed one) to a registered model, as
        ``switchyard bind`` does (the bound model is part of the tracked config)."""
        self._add("bind_model", collection, model=_name(model, "model"), vector=vector,
                  enforce=enforce)

    def change_model(self, collection: str, to_model: str, **plan: Any) -> None:
        """Re-embed with another registered model: a migration (``switchyard migrate plan``'s
        options as keyword arguments: ``target``, ``doc_key``, ``text_field``, ...)."""
        self._add("change_model", collection, to_model=_name(to_model, "model"), **plan)

    def split_collection(self, collection: str, **plan: Any) -> None:
        """Split a collection by a payload field: a migration of kind ``split``."""
        self._add("split_collection", collection, **plan)

    def rename_via_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one atomic alias request."""
        self._add("rename_via_alias", collection, alias=_name(alias, "alias"))

    def run_python(self, fn: Callable[[Any], Any], collection: str = "-") -> None:
        """Run ``fn(ctx)`` (a data fix) at this point of the upgrade; it must be idempotent."""
        if not callable(fn):
            raise BadRequest("run_python needs a callable")
        self.recorded.append(Operation("run_python", collection, {"fn": _qualname(fn)}, fn))


def _opt(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(value) if value is not None else None


def _qualname(fn: Callable[[Any], Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def record(fn: Callable[[Operations], Any]) -> list[Operation]:
    """The operations ``fn(op)`` records (an ``upgrade`` or ``downgrade`` function)."""
    op = Operations()
    fn(op)
    return list(op.recorded)
