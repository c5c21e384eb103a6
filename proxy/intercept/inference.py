"""Server-side inference for point writes: the proxy embeds inference objects itself.

A point may carry, instead of a vector, an inference object ``{"text": ..., "model": M}``
(REST) or a ``Document`` (gRPC). Open-source Qdrant cannot embed it; when ``M`` is a model
registered in Switchyard, the proxy embeds the text with that model (batched per model) and
replaces the object by the dense vector before forwarding. Objects naming unknown models are
left alone, so a Qdrant with its own inference still serves them.

Every text the proxy would embed is bounded before anything is embedded (:class:`InferenceLimits`,
:func:`bound_problem`): per object by what the model can read (``max_inference_text_chars``, by
default :func:`model_text_chars`) and per request in total (``max_inference_request_chars``).
Over a bound the call is refused with a Qdrant-shaped 400 / ``INVALID_ARGUMENT`` naming the
limit, so a 10 MB text costs a length check, never a tokenizer run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from prometheus_client import Counter

from switchyard.proxy.errors import BadRequest
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.snapshot import StateSnapshot

#: Per-object bound when the model's input length is not known (about 2,000 tokens).
DEFAULT_TEXT_CHARS = 8192
#: Per-request bound on the text of all inference objects together (1 MiB of characters).
DEFAULT_REQUEST_CHARS = 1 << 20
#: Characters allowed per token of the model's input: ``batching``'s 4 characters per token,
#: twice over, so a client relying on ``truncate: end`` for a somewhat long text still works.
CHARS_PER_INPUT_TOKEN = 8
#: OpenAI's per-input token limit (the HTTP provider's default ``max_length``).
OPENAI_INPUT_TOKENS = 8191

REFUSED = Counter("switchyard_inference_refused_total",
                  "Calls refused because their inference text was over a bound, by bound.", ["limit"])


def model_text_chars(spec: ModelSpec) -> int:
    """The default per-object bound for ``spec``: what its input can hold, in characters (pure).

    ``max_length`` tokens (or OpenAI's 8191 for the HTTP provider) x
    :data:`CHARS_PER_INPUT_TOKEN`, never below :data:`DEFAULT_TEXT_CHARS`: a small model
    (128 tokens) still takes a paragraph and truncates it, as it did before there were bounds.
    """
    tokens = spec.max_length or (OPENAI_INPUT_TOKENS if spec.provider == "openai" else 0)
    return max(DEFAULT_TEXT_CHARS, tokens * CHARS_PER_INPUT_TOKEN)


@dataclass(frozen=True, slots=True)
class InferenceLimits:
    """Bounds on inference text; ``per_object=None`` takes each model's :func:`model_text_chars`."""

    per_object: int | None = None
    per_request: int = DEFAULT_REQUEST_CHARS

    def object_limit(self, spec: ModelSpec) -> int:
        return self.per_object if self.per_object is not None else model_text_chars(spec)


def bound_problem(texts: Iterable[tuple[int, ModelSpec]], limits: InferenceLimits) -> tuple[str, str] | None:
    """``(limit name, message)`` for the first bound ``(length, model)`` pairs break, else ``None``.

    Pure; stops at the first object over its bound, and as soon as the total is over.
    """
    total = 0
    for length, spec in texts:
        bound = limits.object_limit(spec)
        if length > bound:
            return "max_inference_text_chars", (
                f"inference text of {length} characters for model {spec.id!r} is over the limit "
                f"of {bound} characters per object (max_inference_text_chars)")
        total += length
        if total > limits.per_request:
            return "max_inference_request_chars", (
                f"inference texts of this request are over the limit of {limits.per_request} "
                f"characters per request (max_inference_request_chars)")
    return None


def check_bounds(texts: Iterable[tuple[int, ModelSpec]], limits: InferenceLimits) -> None:
    """Raise :class:`BadRequest` (400 / INVALID_ARGUMENT) when :func:`bound_problem` finds one."""
    problem = bound_problem(texts, limits)
    if problem is not None:
        REFUSED.labels(problem[0]).inc()
        raise BadRequest(problem[1])


@dataclass(frozen=True, slots=True)
class Slot:
    """One inference object in a message, and how to put its vector in its place."""

    text: str
    model: str
    put: Callable[[list[float]], None]


class Embeds(Protocol):
    limits: InferenceLimits

    async def embed(self, spec: ModelSpec, texts: list[str]) -> np.ndarray: ...


async def serve(slots: list[Slot], snap: StateSnapshot, pool: Embeds) -> int:
    """Embed every slot whose model is registered; returns how many were replaced.

    The bounds (``pool.limits``) are checked over all of them before any is embedded.
    """
    by_model: dict[str, list[Slot]] = {}
    for slot in slots:
        if slot.model in snap.models:
            by_model.setdefault(slot.model, []).append(slot)
    check_bounds(((len(s.text), snap.models[m]) for m, group in by_model.items() for s in group),
                 pool.limits)
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
