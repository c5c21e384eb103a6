"""The Edge engine's table of seam calls: what kind of call each ``QdrantLocal`` method is, and
its arguments by name.

Contract: pure data and one pure function, no I/O and no engine state. :data:`CATALOG_METHODS`
are answered from the catalog, never by a shard; :data:`DIMENSIONED` writes are checked
against the collection's vector dimensions before any is applied; :data:`READS` change nothing
(the worker's own set, so the two never disagree). :func:`bind` names a call's arguments by
``QdrantLocal``'s signature, which is how :meth:`edge_engine.EdgeEngine.call` dispatches on
them; a method outside the table binds only by keyword (its positional arguments are refused
as unsupported).

Why a module of its own: this is what the engine knows about the seam's methods before it
routes one, separate from the routing, the shard calls and the optimizer in
:mod:`edge_engine`; the signatures are read once, at import.
"""

from __future__ import annotations

import inspect
from typing import Any

from qdrant_client.local.qdrant_local import QdrantLocal

from switchyard.proxy.embedded import edge_worker, seam_args
from switchyard.proxy.errors import Unsupported

#: methods answered from the catalog, never by a shard
CATALOG_METHODS = frozenset({
    "create_collection", "delete_collection", "get_collection", "get_collections",
    "collection_exists", "update_collection", "update_collection_aliases", "get_aliases",
    "get_collection_aliases", "info",
})
#: writes whose vectors are checked against the collection's dimensions before any is applied
DIMENSIONED = frozenset({"upsert", "update_vectors", "batch_update_points"})
#: methods a shard answers that change nothing (no optimizer pass after them)
READS = edge_worker.READS
_SIGNATURES = {
    name: inspect.signature(getattr(QdrantLocal, name))
    for name in ("upsert", "delete", "update_vectors", "delete_vectors", "set_payload",
                 "overwrite_payload", "delete_payload", "clear_payload", "batch_update_points",
                 "create_payload_index", "delete_payload_index", "create_vector_name",
                 "delete_vector_name", "retrieve", "scroll", "count", "facet", "query_points",
                 "query_points_groups", "create_collection", "delete_collection",
                 "get_collection", "collection_exists", "update_collection",
                 "update_collection_aliases", "get_collection_aliases", "search_matrix_pairs",
                 "search_matrix_offsets")
}


def bind(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``QdrantLocal.<method>``'s arguments by name (positional ones named, extras flattened)."""
    sig = _SIGNATURES.get(method)
    if sig is None:
        if args:
            raise Unsupported(f"{method} is not supported by the Edge engine")
        return dict(kwargs)
    return seam_args.by_name(sig, args, kwargs)
