"""``plan(op, state)``: the pure decision of what the proxy does with a point write.

No I/O, no clock: the same operation and snapshot always give the same plan, so every rule is
a row in a table test. A plan says what to do and why, in words that go to logs and errors.

Rules for a write to a collection bound to model spec M (``binding_for`` follows aliases):

- not bound: forward untouched.
- ``enforce``: any point whose bound vector is missing, is not dense, or has a size other than
  M's, or whose payload names another model or size, rejects the *whole* write (nothing is
  written) with a reason naming the first offending points.
- otherwise stamp ``embedding_model_id``, ``embedding_dimensions``, ``embedding_version`` (and
  ``embedding_fingerprint`` when M has one) on every point, keeping values the client set; points
  whose own metadata names another model are listed in ``foreign`` for the metric and log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from switchyard.proxy.intercept.operation import Operation, PointInfo, VectorKind
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import (
    META_DIMENSIONS,
    META_FINGERPRINT,
    META_MODEL_ID,
    META_VERSION,
    Binding,
)
from switchyard.proxy.state.snapshot import StateSnapshot

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_MAX_NAMED = 3


class Action(str, Enum):
    FORWARD = "forward"
    STAMP = "stamp"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Plan:
    action: Action
    reason: str
    collection: str = ""
    model_id: str = ""
    stamp: Mapping[str, Any] = field(default_factory=dict)
    foreign: tuple[str, ...] = ()


def metadata_for(spec: ModelSpec) -> dict[str, Any]:
    """The payload fields a point embedded by ``spec`` carries."""
    meta: dict[str, Any] = {
        META_MODEL_ID: spec.id,
        META_DIMENSIONS: spec.dimensions,
        META_VERSION: spec.version,
    }
    if spec.fingerprint:
        meta[META_FINGERPRINT] = spec.fingerprint
    return meta


def plan(op: Operation, state: StateSnapshot) -> Plan:
    bound = state.binding_for(op.collection)
    if bound is None:
        return Plan(Action.FORWARD, f"collection `{op.collection}` is not bound to a model")
    binding, spec = bound
    foreign = tuple(p.id for p in op.metadata_points() if _names_other_model(p, spec))
    if binding.enforce:
        problems = [f"point {p.id}: {why}" for p in op.points
                    if (why := _misfit(p, binding, spec, p.id in op.payload_only))]
        if problems:
            more = f" (and {len(problems) - _MAX_NAMED} more)" if len(problems) > _MAX_NAMED else ""
            return Plan(
                Action.REJECT,
                "enforce: " + "; ".join(problems[:_MAX_NAMED]) + more
                + f"; nothing was written (collection `{op.collection}` is bound to model "
                f"`{spec.id}` in enforce mode)",
                collection=op.collection,
                model_id=spec.id,
            )
    reason = f"stamping {len(op.points)} point(s) with model `{spec.id}` ({binding.mode})"
    if foreign:
        reason += f"; {len(foreign)} point(s) name another model and keep their own metadata"
    return Plan(
        Action.STAMP,
        reason,
        collection=op.collection,
        model_id=spec.id,
        stamp=MappingProxyType(metadata_for(spec)),
        foreign=foreign,
    )


def _names_other_model(point: PointInfo, spec: ModelSpec) -> bool:
    named = point.meta.get(META_MODEL_ID)
    return named is not None and named != spec.id


def _misfit(point: PointInfo, binding: Binding, spec: ModelSpec, payload_only: bool = False) -> str | None:
    """Why ``point`` does not fit ``spec`` (``None`` when it does); payload-only writes
    (overwrite payload) are checked for their metadata alone."""
    if not payload_only and (why := _vector_misfit(point, binding, spec)):
        return why
    if _names_other_model(point, spec):
        return f"payload names {META_MODEL_ID} `{point.meta[META_MODEL_ID]}`, not `{spec.id}`"
    dims = point.meta.get(META_DIMENSIONS)
    if dims is not None and dims != spec.dimensions:
        return f"payload names {META_DIMENSIONS} {dims}, model `{spec.id}` has {spec.dimensions}"
    return None


def _vector_misfit(point: PointInfo, binding: Binding, spec: ModelSpec) -> str | None:
    label = f"`{binding.vector}`" if binding.vector else "(unnamed)"
    vector = point.vectors.get(binding.vector)
    if vector is None:
        return f"has no vector {label} for model `{spec.id}`"
    if vector.kind is VectorKind.DENSE and vector.dims != spec.dimensions:
        return (
            f"vector {label} has {vector.dims} dimensions, "
            f"model `{spec.id}` expects {spec.dimensions}"
        )
    if vector.kind in (VectorKind.SPARSE, VectorKind.MULTI):
        return f"vector {label} is {vector.kind.value}, model `{spec.id}` is dense"
    return None
