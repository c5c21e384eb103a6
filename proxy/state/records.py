"""Typed records kept in the state store, with their JSON forms.

Model specs are :class:`switchyard.proxy.modelspec.ModelSpec` (kind ``model``); this module holds the
records the proxy adds around them. Each record type names its ``KIND`` and its store ``key``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from switchyard.proxy.errors import BadRequest

#: The collection holding Switchyard's state (the store: :mod:`switchyard.proxy.state.store`).
STATE_COLLECTION = "_switchyard"

#: The payload fields Switchyard stamps on every point written to a bound collection.
META_MODEL_ID = "embedding_model_id"
META_DIMENSIONS = "embedding_dimensions"
META_VERSION = "embedding_version"
META_FINGERPRINT = "embedding_fingerprint"
META_FIELDS = (META_MODEL_ID, META_DIMENSIONS, META_VERSION, META_FINGERPRINT)
#: Payload flag on a secondary point whose vector is the query adapter's image of the primary's
#: (a mirrored upsert without text, issue 15), not a real embedding: the id is in the repair log
#: and ``verified`` waits until the backfill re-embeds it. Switchyard metadata, like the
#: ``embedding_*`` fields above: never content (``digest.content_of``, ``writes.strip_meta``), so
#: it never changes a source digest; not in :data:`META_FIELDS` (which a client may set).
META_APPROXIMATE = "embedding_approximate"


@dataclass(frozen=True, slots=True)
class Binding:
    """A collection (or alias) bound to a model spec.

    ``vector`` names the dense vector the spec describes (``""`` is the unnamed default vector).
    ``enforce`` rejects writes whose vectors or metadata do not fit the spec; otherwise the proxy
    enriches (fills the metadata the client left out, keeps what it set).
    """

    KIND: ClassVar[str] = "binding"

    collection: str
    model_id: str
    enforce: bool = False
    vector: str = ""

    def __post_init__(self) -> None:
        if not self.collection or self.collection.startswith("_switchyard"):
            raise BadRequest(f"cannot bind collection {self.collection!r}")
        if not self.model_id:
            raise BadRequest("a binding needs a model id")

    @property
    def key(self) -> str:
        return self.collection

    @property
    def mode(self) -> str:
        return "enforce" if self.enforce else "enrich"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Binding:
        return cls(
            collection=str(data["collection"]),
            model_id=str(data["model_id"]),
            enforce=bool(data.get("enforce", False)),
            vector=str(data.get("vector") or ""),
        )
