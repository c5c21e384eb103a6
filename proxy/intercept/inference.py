"""Server-side inference for point writes: the proxy embeds inference objects itself.

A point may carry, instead of a vector, an inference object ``{"text": ..., "model": M}``
(REST) or a ``Document`` (gRPC). Open-source Qdrant cannot embed it; when ``M`` is a model
registered in Switchyard, the proxy embeds the text with that model (batched per model) and
replaces the object by the dense vector before forwarding. Objects naming unknown models are
left alone, so a Qdrant with its own inference still serves them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from proxy.modelspec import ModelSpec
from proxy.state.snapshot import StateSnapshot


@dataclass(frozen=True, slots=True)
class Slot:
    """One inference object in a message, and how to put its vector in its place."""

    text: str
    model: str
    put: Callable[[list[float]], None]


class Embeds(Protocol):
    async def embed(self, spec: ModelSpec, texts: list[str]) -> np.ndarray: ...


async def serve(slots: list[Slot], snap: StateSnapshot, pool: Embeds) -> int:
    """Embed every slot whose model is registered; returns how many were replaced."""
    by_model: dict[str, list[Slot]] = {}
    for slot in slots:
        if slot.model in snap.models:
            by_model.setdefault(slot.model, []).append(slot)
    for model, group in by_model.items():
        vectors = np.asarray(await pool.embed(snap.models[model], [s.text for s in group]), dtype=np.float32)
        for slot, vector in zip(group, vectors.tolist()):
            slot.put(vector)
    return sum(len(g) for g in by_model.values())


# -- REST JSON ---------------------------------------------------------------------------------

def _is_document(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("text"), str) and isinstance(value.get("model"), str)


def _setter(container: Any, key: Any) -> Callable[[list[float]], None]:
    def put(vector: list[float]) -> None:
        container[key] = vector
    return put


def rest_slots(body: Any) -> list[Slot]:
    """Inference objects in an upsert body or in the upserts of a batch-update body."""
    return list(_rest_walk(body))


def _rest_walk(body: Any) -> Iterator[Slot]:
    if not isinstance(body, dict):
        return
    if isinstance(body.get("operations"), list):
        for op in body["operations"]:
            if isinstance(op, dict) and isinstance(op.get("upsert"), dict):
                yield from _rest_walk(op["upsert"])
        return
    if isinstance(body.get("points"), list):
        for point in body["points"]:
            if isinstance(point, dict):
                yield from _vector_slots(point, "vector")
    elif isinstance(body.get("batch"), dict):
        vectors = body["batch"].get("vectors")
        columns = vectors.values() if isinstance(vectors, dict) else [vectors]
        for column in columns:
            if isinstance(column, list):
                for i in range(len(column)):
                    if _is_document(column[i]):
                        yield Slot(column[i]["text"], column[i]["model"], _setter(column, i))


def _vector_slots(container: dict[str, Any], key: str) -> Iterator[Slot]:
    value = container.get(key)
    if not isinstance(value, dict):
        return
    if _is_document(value):
        yield Slot(value["text"], value["model"], _setter(container, key))
    else:
        for name, inner in value.items():
            if _is_document(inner):
                yield Slot(inner["text"], inner["model"], _setter(value, name))


# -- protobuf ----------------------------------------------------------------------------------

def _grpc_setter(vector: Any) -> Callable[[list[float]], None]:
    def put(values: list[float]) -> None:
        vector.ClearField("document")
        vector.dense.data[:] = values
    return put


def grpc_slots(points: Iterator[Any]) -> list[Slot]:
    """Documents in the ``PointStruct``s of an upsert (from ``GrpcMessage.point_structs()``)."""
    slots: list[Slot] = []
    for point in points:
        which = point.vectors.WhichOneof("vectors_options")
        vectors = [point.vectors.vector] if which == "vector" else (
            list(point.vectors.vectors.vectors.values()) if which == "vectors" else [])
        for vector in vectors:
            if vector.WhichOneof("vector") == "document":
                slots.append(Slot(vector.document.text, vector.document.model, _grpc_setter(vector)))
    return slots
