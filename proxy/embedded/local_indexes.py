"""The local engine's payload indexes, kept as Qdrant keeps them: which field has which index
(type and params), reported in the collection info's ``payload_schema`` with the number of
points it holds, and required for facets.

``QdrantLocal`` accepts ``create_payload_index`` and forgets it (its collection info always says
``payload_schema: {}``), so a migration planner reading a collection's indexes saw none and a
facet answered where Qdrant refuses. :class:`PayloadIndexes` records them per collection; with a
path it persists them in :data:`FILE` beside the local engine's ``meta.json`` (replaced
atomically, like ``meta.json``), so they survive a restart. Only the engine's worker thread, under
its write admission, changes them.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from pydantic import TypeAdapter
from qdrant_client.http import models
from qdrant_client.local.payload_value_extractor import value_by_key

from switchyard.proxy.errors import BadRequest

FILE = "switchyard_payload_indexes.json"
_SCHEMA: TypeAdapter[Any] = TypeAdapter(models.PayloadFieldSchema)
#: index types a facet may read (Qdrant: the ones that support Match conditions)
FACETABLE = frozenset({
    models.PayloadSchemaType.KEYWORD, models.PayloadSchemaType.INTEGER,
    models.PayloadSchemaType.BOOL, models.PayloadSchemaType.UUID,
})


def data_type(schema: Any) -> models.PayloadSchemaType:
    """The index type of a ``field_schema`` (a type name, or index params with a ``type``)."""
    if isinstance(schema, models.PayloadSchemaType):
        return schema
    if isinstance(schema, str):
        return models.PayloadSchemaType(schema)
    return models.PayloadSchemaType(getattr(schema, "type").value)


class PayloadIndexes:
    """Field indexes by collection; ``path=None`` keeps them in memory only."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._by_collection: dict[str, dict[str, Any]] = {}
        #: points per (collection, field), valid until the next write (:meth:`invalidate`)
        self._counts: dict[tuple[str, str], int] = {}
        file = self._file()
        if file is not None and os.path.exists(file):
            with open(file, "rb") as fh:
                raw = orjson.loads(fh.read())
            self._by_collection = {
                c: {f: _SCHEMA.validate_python(s) for f, s in fields.items()} for c, fields in raw.items()}

    def _file(self) -> str | None:
        return os.path.join(self.path, FILE) if self.path else None

    def invalidate(self) -> None:
        """Forget the cached point counts (the engine calls this after every write)."""
        self._counts = {}

    def points(self, collection: Any, name: str, field: str, schema: Any) -> int:
        """:func:`points_indexed`, counted once per field between writes (a read may run
        beside another read; both would store the same number)."""
        key = (name, field)
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = points_indexed(collection, field, schema)
        return count

    def fields(self, collection: str) -> dict[str, Any]:
        """``field -> field_schema`` of a collection (a copy)."""
        return dict(self._by_collection.get(collection, {}))

    def replace(self, collection: str, fields: dict[str, Any]) -> None:
        """Set a collection's indexes as a whole (snapshot recovery)."""
        if fields:
            self._by_collection[collection] = dict(fields)
        else:
            self._by_collection.pop(collection, None)
        self.save()

    def set(self, collection: str, field: str, schema: Any) -> None:
        if schema is None:
            raise BadRequest("field_schema: an index needs a field type or index params")
        data_type(schema)  # refuse what has no index type before recording anything
        self._by_collection.setdefault(collection, {})[field] = schema
        self.save()

    def drop(self, collection: str, field: str) -> None:
        if self._by_collection.get(collection, {}).pop(field, None) is not None:
            if not self._by_collection[collection]:
                del self._by_collection[collection]
            self.save()

    def drop_collection(self, collection: str) -> None:
        if self._by_collection.pop(collection, None) is not None:
            self.save()

    def save(self) -> None:
        file = self._file()
        if file is None:
            return
        data = {c: {f: _SCHEMA.dump_python(s, mode="json", exclude_none=True) for f, s in fields.items()}
                for c, fields in self._by_collection.items()}
        tmp = f"{file}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, file)


def schema_info(schema: Any, points: int) -> models.PayloadIndexInfo:
    """The ``payload_schema`` entry Qdrant reports for an index (params only when given)."""
    params = None if isinstance(schema, (models.PayloadSchemaType, str)) else schema
    return models.PayloadIndexInfo(data_type=data_type(schema), params=params, points=points)


def _holds(schema_type: models.PayloadSchemaType, value: Any) -> bool:
    """Whether an index of ``schema_type`` holds ``value`` (Qdrant indexes values of its type)."""
    t = models.PayloadSchemaType
    if schema_type == t.BOOL:
        return isinstance(value, bool)
    if schema_type == t.INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if schema_type == t.FLOAT:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if schema_type in (t.KEYWORD, t.TEXT, t.UUID, t.DATETIME):
        return isinstance(value, str)
    if schema_type == t.GEO:
        return isinstance(value, dict) and "lat" in value and "lon" in value
    return value is not None


def points_indexed(collection: Any, field: str, schema: Any) -> int:
    """How many live points of a ``LocalCollection`` have a value the index would hold."""
    kind = data_type(schema)
    count = 0
    deleted = collection.deleted
    for idx, payload in enumerate(collection.payload):
        if deleted[idx] or not isinstance(payload, dict):
            continue
        values = value_by_key(payload, field)
        if values and any(_holds(kind, v) for v in values):
            count += 1
    return count


def facet_schema(fields: dict[str, Any], key: str) -> models.PayloadSchemaType:
    """The index type a facet on ``key`` reads, or Qdrant's refusal when there is none."""
    schema = fields.get(key)
    if schema is None or data_type(schema) not in FACETABLE:
        raise BadRequest(
            f"No appropriate index for faceting: `{key}`. Please create one to facet on this "
            "field. Check https://qdrant.tech/documentation/concepts/indexing/#payload-index to "
            "see which payload schemas support Match conditions")
    return data_type(schema)


def facet_hits(response: models.FacetResponse, kind: models.PayloadSchemaType) -> models.FacetResponse:
    """The local engine's facet limited to the values an index of ``kind`` holds."""
    return models.FacetResponse(hits=[h for h in response.hits if _holds(kind, h.value)])
