"""Which query vector each side of a merged read gets (pure: no I/O, no clock).

A similarity read carries zero or more *vector slots*: places holding a raw dense vector
(``[0.1, ...]``) or an inference object (REST ``{"text": ..., "model": ...}``, gRPC ``Document``).
For each side of a migration (source = model A, target = model B) this module decides, slot by
slot, whether the request can be sent as is, whether the proxy must fill the slot with the
side's embedding of a text, or whether the side cannot be served (skipped, with a reason that
ends up in the merge header):

* a raw dense vector belongs to model A or B: by its dimension when A and B differ, else by the
  phase (model A until ``writes_switched``, when clients start sending model-B vectors; see the
  lifecycle table in ``DESIGN.md``). A side of the other model cannot use it: skipped, unless
  the migration has a usable query adapter into that side's space (``adapter_store``): then the
  slot is *mapped* (the side gets the adapter's image of the vector, issue 15);
* an inference object naming a registered model (by spec id or by provider model name) is the
  query *text*: every side gets that text embedded with its own model, so both sides can be
  searched. An inference object naming an unknown model is left for Qdrant to resolve;
* ids (query by point id, recommend by ids) need nothing: each side resolves ids in its own
  collection, with its own model's stored vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from switchyard.proxy.migration.record import COMPLETE, WRITES_SWITCHED
from switchyard.proxy.modelspec import ModelSpec

_B_PHASES = frozenset({WRITES_SWITCHED, COMPLETE})


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """One vector slot: a raw dense vector (``dims``) or an inference object (``text``, ``model``)."""

    dims: int | None = None
    text: str | None = None
    model: str | None = None
    #: the raw vector's components (for an adapter to map); not part of equality
    vector: Sequence[float] | None = field(default=None, compare=False, repr=False)

    @property
    def is_document(self) -> bool:
        return self.text is not None


@dataclass(frozen=True, slots=True)
class SidePlan:
    """What one side needs: ``fills`` are (slot index, text) to embed with ``model_id``."""

    side: str
    model_id: str
    fills: tuple[tuple[int, str], ...] = ()
    skip: str | None = None
    mapped: tuple[int, ...] = ()  # raw-vector slots of the other model: the adapter's image


def find_model(name: str | None, models: Mapping[str, ModelSpec]) -> ModelSpec | None:
    """The registered spec an inference object names (by spec id first, then provider model)."""
    if not name:
        return None
    if name in models:
        return models[name]
    for spec in models.values():
        if spec.model == name:
            return spec
    return None


def inference_texts(slots: Sequence[SlotInfo], models: Mapping[str, ModelSpec]) -> list[tuple[int, ModelSpec]]:
    """``(text length, model)`` of every inference object naming a registered model: the texts
    the proxy may embed for this sub-request, which the inference limits bound (pure)."""
    found = ((s, find_model(s.model, models)) for s in slots if s.is_document)
    return [(len(s.text or ""), spec) for s, spec in found if spec is not None]


def raw_vector_model(dims: int, a: ModelSpec, b: ModelSpec, phase: str) -> str:
    """The model id a raw dense query vector of ``dims`` components belongs to."""
    if a.dimensions != b.dimensions:
        if dims == a.dimensions:
            return a.id
        if dims == b.dimensions:
            return b.id
    return b.id if phase in _B_PHASES else a.id


def plan_side(
    side: str,
    slots: Sequence[SlotInfo],
    side_model: ModelSpec,
    a: ModelSpec,
    b: ModelSpec,
    phase: str,
    models: Mapping[str, ModelSpec],
    adaptable: bool = False,
) -> SidePlan:
    """The plan for one side whose collection holds ``side_model``'s vectors; ``adaptable``:
    a usable adapter maps the other model's raw vectors into this side's space."""
    fills: list[tuple[int, str]] = []
    mapped: list[int] = []
    for index, slot in enumerate(slots):
        if slot.is_document:
            if find_model(slot.model, models) is not None or slot.model in (a.id, b.id):
                fills.append((index, slot.text or ""))
            continue
        if slot.dims is None:
            continue
        owner = raw_vector_model(slot.dims, a, b, phase)
        if owner != side_model.id and adaptable and slot.vector is not None:
            mapped.append(index)
        elif owner != side_model.id:
            return SidePlan(
                side, side_model.id, (),
                f"raw query vector is model {owner} ({slot.dims} dims), {side} holds "
                f"{side_model.id}; send an inference object (Document) to search both",
            )
    return SidePlan(side, side_model.id, tuple(fills), mapped=tuple(mapped))


def plan_sides(
    slots: Sequence[SlotInfo], a: ModelSpec, b: ModelSpec, phase: str,
    models: Mapping[str, ModelSpec], adaptable: tuple[bool, bool] = (False, False),
) -> tuple[SidePlan, SidePlan]:
    """``(target plan, source plan)`` for one sub-request; ``adaptable`` per side likewise."""
    return (
        plan_side("target", slots, b, a, b, phase, models, adaptable[0]),
        plan_side("source", slots, a, a, b, phase, models, adaptable[1]),
    )


def plan_inference(
    slots: Sequence[SlotInfo], bound: ModelSpec | None, models: Mapping[str, ModelSpec],
    *, also: ModelSpec | None = None,
) -> tuple[tuple[int, str], ...]:
    """Slots the proxy fills with ``bound``'s embedding.

    Outside any migration only inference objects naming the bound model itself are resolved
    (embedding with another model would put a foreign vector into the collection's space); others
    go to Qdrant as sent. ``also``: when a migration's reads are served by its source alone (read
    mode ``source``, and the served half of ``shadow``), an object naming the migration's model B
    is the query *text* too, embedded with A, as a merged read's source side does
    (:func:`plan_side`), so one Document query gets an answer in every read mode (a client or
    ``migrate eval`` may already name B).
    """
    if bound is None:
        return ()
    accepted = (bound,) if also is None else (bound, also)
    names = {n for spec in accepted for n in (spec.id, spec.model)}
    return tuple(
        (i, s.text or "") for i, s in enumerate(slots)
        if s.is_document and (s.model in names or find_model(s.model, models) in accepted)
    )
