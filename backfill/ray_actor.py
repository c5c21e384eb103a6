"""The Ray side of ``--executor ray``: the ``map_batches`` UDF and the row format it speaks.

Contract: :class:`EmbedActor` is the class Ray Data builds on each actor of the pool (built with
``fn_constructor_kwargs={"spec": spec.to_dict()}``); it takes rows ``{req, texts}`` and returns
rows ``{req, vectors, error}``. :func:`error_text` / :func:`error_from_text` carry an embedder
error across that boundary as ``"ClassName:message"`` and back as the same class, and
:func:`decode` turns an actor's vector bytes back into a checked float32 matrix. The driver side
(the long-lived execution, :class:`~switchyard.backfill.ray_executor.RayEmbedder`) lives in
:mod:`switchyard.backfill.ray_executor`, which re-exports these names.

Why a module of its own: this is the part of the executor that runs on the Ray workers (the
rest runs in the daemon's process), split out of ``ray_executor.py`` when that outgrew the house
size limit. Ray pickles the UDF class by reference, so every worker imports it by this path,
``switchyard.backfill.ray_actor``: a cluster's nodes need ``switchyard[ray]`` installed. Both
ends of the row format stay here, next to each other, so they change together.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from switchyard.proxy import errors
from switchyard.proxy.embedders.base import check_vectors
from switchyard.proxy.errors import EmbedderError
from switchyard.proxy.modelspec import ModelSpec

#: how this executor names itself in error messages (also used by the driver side)
_SOURCE = "ray executor"


class EmbedActor:
    """The ``map_batches`` UDF: one embedder per actor, built once; one row = one request.

    Input rows ``{req, texts}``; output rows ``{req, vectors, error}``: ``vectors`` the float32
    bytes of ``(len(texts), dims)``, or ``error`` ``"ClassName:message"`` when embedding failed
    (the row carries the failure so one bad request never ends the shared execution)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from switchyard.proxy.embedders import make_embedder

        self.loop = asyncio.new_event_loop()
        self.embedder = make_embedder(ModelSpec.from_dict(spec, strict=False))

    def __call__(self, batch: Any) -> dict[str, Any]:
        reqs = batch.column("req").to_pylist()
        out_vectors: list[bytes] = []
        out_errors: list[str] = []
        for texts in batch.column("texts").to_pylist():
            try:
                matrix = self.loop.run_until_complete(self.embedder.embed(texts))
                out_vectors.append(np.ascontiguousarray(matrix, dtype=np.float32).tobytes())
                out_errors.append("")
            except Exception as exc:  # noqa: BLE001 -- carried back to the caller as data
                out_vectors.append(b"")
                out_errors.append(error_text(exc))
        return {"req": np.array(reqs, dtype=np.int64), "vectors": np.array(out_vectors, dtype=object),
                "error": np.array(out_errors, dtype=object)}

    def __del__(self) -> None:
        try:
            self.loop.run_until_complete(self.embedder.aclose())
            self.loop.close()
        except Exception:  # noqa: BLE001 -- best effort at actor exit
            pass


def error_text(exc: BaseException) -> str:
    """``"ClassName:message"``: a Switchyard error keeps its class and raw message."""
    if isinstance(exc, errors.SwitchyardError):
        return f"{type(exc).__name__}:{exc.message}"
    return f"EmbedderError:{_SOURCE}: {type(exc).__name__}: {exc}"


def error_from_text(text: str) -> errors.SwitchyardError:
    """The exception :func:`error_text` describes (an unknown class becomes ``EmbedderError``)."""
    name, _, message = text.partition(":")
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.SwitchyardError):
        return cls(message, raw=True)
    return EmbedderError(f"{_SOURCE}: {text}")


def decode(spec: ModelSpec, blob: bytes, count: int) -> np.ndarray:
    """An actor's vector bytes as ``(count, spec.dimensions)`` float32, checked."""
    flat = np.frombuffer(blob, dtype=np.float32)
    if count == 0 or flat.size % count:
        raise EmbedderError(f"{_SOURCE} returned {flat.size} components for {count} texts")
    return check_vectors(spec, flat.reshape(count, -1), count, _SOURCE)
