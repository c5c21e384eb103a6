"""The secondary's points of a mirrored write, and the mirror's calls to the upstream.

:class:`SecondaryPoints` turns the touched points, as the primary now holds them
(``NewPoint``: the request's own, or a re-read), into the points the secondary gets:

* a re-embedding migration: the secondary model's vector, embedded from the text field (the
  embedding ``prepare`` started is reused when it is for the same texts), kept as float32
  numpy rows so orjson prints them in C;
* a copy-vectors migration: the point's own vector, converted by the migration's kind;
* a point without text: on the target, with a usable query adapter, the adapter's image of its
  A vector, flagged ``embedding_approximate`` (``adapter_points.py``); otherwise its id is
  returned as missing, for the repair log;
* every point: its payload without the client's metadata, the secondary model's metadata and,
  on the target, the digest of the source content.

It also holds the mirror's calls to the upstream: a gRPC client's plain upsert sent over the
upstream's gRPC (:meth:`_sent_over_grpc`, ``secondary_leg.py``; False when not taken or
failed, so the REST path writes it), the primary re-read (:meth:`_retrieve`; with vectors over
gRPC when it can, ``reread_grpc.py``), and
:meth:`_call`, every REST call of the mirror, which raises ``UpstreamError`` for an answer
that is not 2xx so the caller records the difference.

When to level, which ids are gone, and what becomes of a failure (the repair log, the
intent, the order of writes) is ``mirror.py``'s: its
:class:`~switchyard.proxy.dataplane.mirror.Mirror` extends this class. A base class, not a
separate object, because ``split_mirror`` and ``split_level`` call these methods on the
``Mirror`` they are given, and so that the ``Mirror``'s attributes (``pool``, ``adapters``,
the gRPC leg, the forward) are the only ones that run: patching ``mirror.pool`` patches the
embedding used here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from switchyard.proxy.dataplane import adapter_points
from switchyard.proxy.dataplane.adapter_store import AdapterCache
from switchyard.proxy.dataplane.digest import DIGEST_FIELD, source_digest, source_digests, vector_repr
from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
from switchyard.proxy.dataplane.secondary_leg import GrpcLeg
from switchyard.proxy.dataplane.writes import NewPoint, point_key, strip_meta
from switchyard.proxy.errors import UpstreamError
from switchyard.proxy.intercept.planner import metadata_for
from switchyard.proxy.intercept.routes import rest_path
from switchyard.proxy.migration import kinds
from switchyard.proxy.state.records import META_APPROXIMATE
from switchyard.proxy.wire import Headers, RestCall, RestForward

if TYPE_CHECKING:
    from switchyard.proxy.dataplane.mirror import MirrorTarget, Prepared


class SecondaryPoints:
    """Builds the secondary's points and makes the mirror's upstream calls (module docstring);
    the attributes are set by ``Mirror.__init__``."""

    pool: EmbedderPool
    #: query adapters for upserts without text
    adapters: AdapterCache
    #: the upstream's gRPC, for secondaries of gRPC clients' upserts; ``None``: always REST
    _grpc: GrpcLeg | None
    _forward: RestForward

    async def _sent_over_grpc(self, prep: Prepared, points: list[NewPoint]) -> bool:
        """Write the secondary over gRPC when the client wrote over gRPC: its parsed points are
        copied by protobuf and B's rows framed as packed floats, so no float is printed
        (``secondary_grpc``, ``secondary_leg``). Only the plain case: a re-embedding kind, the
        request's own points, each with text (points without text take the REST path, which
        maps them with the adapter). False: not taken, or the call failed; the REST path then
        writes it, so a gRPC-only failure never becomes a difference."""
        t = prep.target
        if (self._grpc is None or not points or t.copy or prep.reread or not prep.intent.fast
                or not self._grpc.ready() or t.migration.kind != kinds.DEFAULT_KIND
                or any(p.wire is None or p.text is None for p in points)):
            return False
        vectors = await self._vectors(prep, points)
        digests: list[str | None] = list(source_digests([p.payload for p in points])) if t.to_target else [None] * len(points)
        return await self._grpc.upsert(t.migration.id, t.secondary, [p.wire for p in points], digests,
                                       vectors, t.migration.vector, metadata_for(t.spec), prep.headers,
                                       [p.payload for p in points])

    async def _secondary_points(self, prep: Prepared, points: list[NewPoint]) -> tuple[list[dict[str, Any]], list[Any]]:
        t = prep.target
        if t.copy:
            meta = metadata_for(t.spec)
            kind = kinds.of(t.migration)  # the kind converts carried-over vectors (layout, datatype)
            return [self._point(t, p, kind.mirror_vector(t.migration, p.vector, t.to_target), meta)
                    for p in points if p.vector is not None], [p.id for p in points if p.vector is None]
        with_text = [p for p in points if p.text is not None]
        lacking = [p for p in points if p.text is None]
        vectors = await self._vectors(prep, with_text)
        meta = metadata_for(t.spec)  # once per write, not per point
        out = [self._point(t, p, _place(vec, t.migration.vector), meta) for p, vec in zip(with_text, vectors)]
        mapped = await self._approximate(prep, lacking, meta)
        prep.approximated = [p["id"] for p in mapped]
        done = {point_key(pid) for pid in prep.approximated}
        return out + mapped, [p.id for p in lacking if point_key(p.id) not in done]

    async def _approximate(self, prep: Prepared, lacking: list[NewPoint], meta: dict[str, Any]) -> list[dict[str, Any]]:
        """Target points for upserts without text: the adapter's image of each one's A vector
        (re-read from the primary, as stored), flagged approximate; none without a usable
        adapter (``adapter_points``). The adapter record is cached (``AdapterCache``)."""
        t = prep.target
        if not lacking or not t.to_target or t.migration.kind != kinds.DEFAULT_KIND:
            return []
        ad = adapter_points.adapter_for(t.migration, t.to_target, t.spec, await self.adapters.get(t.migration.id))
        if ad is None:
            return []
        name = t.migration.vector
        body = orjson.dumps({"ids": [p.id for p in lacking], "with_payload": False,
                             "with_vector": [name] if name else True})
        reply = await self._call(RestCall("POST", rest_path(t.primary, "/points"), "", prep.headers, body))
        stored = {point_key(r["id"]): adapter_points.bound_vector(r.get("vector"), name)
                  for r in orjson.loads(reply)["result"]}
        found = adapter_points.images(ad, [stored.get(point_key(p.id)) for p in lacking])
        flagged = {**meta, META_APPROXIMATE: True}
        return [self._point(t, p, _place(img, name), flagged) for p, img in zip(lacking, found) if img is not None]

    async def _vectors(self, prep: Prepared, points: list[NewPoint]) -> Any:
        """One float32 row per point. Rows stay numpy (orjson prints them in C): a 1,024-point
        upsert's ``tolist()`` and the printing of Python floats cost more than the rest of the
        mirror (``docs/proxy.md``, write path)."""
        if not points:
            return []
        texts = [p.text or "" for p in points]
        if prep.embedding is not None and texts == prep.embedded_texts:
            matrix = await prep.embedding
        else:
            matrix = await self.pool.embed(prep.target.spec, texts)
        return np.asarray(matrix, dtype=np.float32)

    @staticmethod
    def _point(t: MirrorTarget, p: NewPoint, vector: Any, meta: dict[str, Any]) -> dict[str, Any]:
        payload = {**strip_meta(p.payload), **meta}
        payload.pop(DIGEST_FIELD, None)
        if t.to_target:
            payload[DIGEST_FIELD] = source_digest(p.payload, vector_repr(p.vector) if t.copy else None)
        return {"id": p.id, "vector": vector, "payload": payload}

    async def _retrieve(self, collection: str, ids: Sequence[Any], headers: Headers, vectors: bool) -> list[dict[str, Any]]:
        """The primary's points ``ids`` as stored now. With ``vectors`` over the upstream's gRPC
        when the leg is ready (dense vectors as numpy rows, no float parsed or printed in
        Python: ``reread_grpc``), else, or when that fails, over REST."""
        if vectors and self._grpc is not None and self._grpc.ready():
            found = await self._grpc.retrieve(collection, ids, headers)
            if found is not None:
                return found
        body = orjson.dumps({"ids": list(ids), "with_payload": True, "with_vector": vectors})
        reply = await self._call(RestCall("POST", rest_path(collection, "/points"), "", headers, body))
        return list(orjson.loads(reply)["result"])

    async def _call(self, call: RestCall) -> bytes:
        headers = (*call.headers, ("content-type", "application/json"))
        reply = await self._forward(RestCall(call.method, call.path, call.query, headers, call.body))
        if not reply.ok:
            raise UpstreamError(f"{call.method} {call.path} answered {reply.status}: {reply.body[:200]!r}")
        return reply.body


def _as_new(point: dict[str, Any], t: MirrorTarget) -> NewPoint:
    payload = point.get("payload") or {}
    text = payload.get(t.migration.text_field)
    return NewPoint(point["id"], payload, text if isinstance(text, str) else None, point.get("vector"))


def _place(vector: Any, name: str) -> Any:
    return {name: vector} if name else vector
