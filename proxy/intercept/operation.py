"""The internal ``Operation``: the little a codec extracts from a wire request for ``plan()``.

Codecs (REST JSON and protobuf) decode only what a decision needs: the target collection and,
per point, its id, the size of each dense vector, and the embedding metadata the client set.
Vector floats are never turned into Python numbers; payloads are never re-typed. The codec keeps
its own decoded message to apply the plan to (see ``rest_codec`` / ``grpc_codec``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, NamedTuple

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class OpKind(str, Enum):
    UPSERT = "upsert"
    BATCH = "batch_update"
    OVERWRITE = "overwrite_payload"


class VectorKind(str, Enum):
    DENSE = "dense"
    SPARSE = "sparse"
    MULTI = "multi_dense"
    INFERENCE = "inference"  # a Document / Image / InferenceObject the server must embed


class VectorInfo(NamedTuple):
    """One vector of a point: its kind and, for dense and multi-dense vectors, its size
    (``None`` when the codec was not asked to count it: only enforce mode needs it).

    Named tuples, not frozen dataclasses: a 1,024-point upsert builds a thousand of each, and
    a tuple is built in a third of the time.
    """

    kind: VectorKind
    dims: int | None = None


class PointInfo(NamedTuple):
    """One point being written: ``vectors`` maps vector name (``""`` = unnamed) to its shape."""

    id: str
    vectors: Mapping[str, VectorInfo] = _EMPTY
    meta: Mapping[str, Any] = _EMPTY


@dataclass(frozen=True, slots=True)
class Operation:
    """A write that carries points, as ``plan()`` sees it, whichever protocol it came in."""

    kind: OpKind
    collection: str
    #: every point, in request order (a codec may build them lazily, as they are read)
    points: Sequence[PointInfo]
    protocol: str  # "rest" | "grpc"
    payload_only: frozenset[str] = frozenset()  # ids of points whose write carries no vectors
    #: the points whose payload sets any embedding metadata field, in order, when the codec
    #: knows them (the others set none): ``plan()`` reads only these unless it enforces, so a
    #: codec need not build the rest (``None``: look at every point)
    with_meta: tuple[PointInfo, ...] | None = None

    def metadata_points(self) -> Sequence[PointInfo]:
        """The points that may set metadata: :attr:`with_meta` when known, else all."""
        return self.points if self.with_meta is None else self.with_meta
