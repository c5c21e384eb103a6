"""The state store: typed records in the reserved collection ``_switchyard`` of the upstream Qdrant.

Why a Qdrant collection: it needs no extra infrastructure and is replicated with the cluster the
data lives in. Every record is one point without vectors, whose id is a UUIDv5 of
``"<kind>/<key>"`` and whose payload is the :class:`Envelope`::

    {"kind": "binding", "key": "docs", "rev": 3, "writer": "<nonce>", "updated_at": 1.7e9, "data": {...}}

Changes are compare-and-set on ``rev``: a conditional upsert (``update_filter: rev == expected``;
``update_mode: insert_only`` for creation), then a read-back that checks the record carries this
write's ``writer`` nonce. Two writers racing on one revision: exactly one read-back matches, the
other gets :class:`~switchyard.proxy.errors.Conflict` naming the revision it lost to. The read-back is what
makes this safe on any Qdrant version and cluster: the conditional upsert alone reports success
even when its filter matched nothing.

The store talks to Qdrant through qdrant-client (REST), directly or through a proxy. A proxy
hides ``_switchyard`` from applications and refuses data-plane calls on it
(``switchyard.proxy.intercept.reserved``) unless they carry Switchyard's own credential, header
``switchyard-admin-key`` (:func:`tool_headers`): every client :meth:`StateStore.connect` makes
sends it, so Switchyard's commands work against a proxy as against Qdrant.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from switchyard.proxy.errors import Conflict, NotFound, UpstreamError
from switchyard.proxy.secret_sources import env_secret
from switchyard.proxy.state.records import STATE_COLLECTION

__all__ = ["STATE_COLLECTION", "StateStore"]
_NAMESPACE = uuid.UUID("6f1b0e2c-5b38-4d0e-9a51-8a7cf1c53a11")
_INDEXED_FIELDS = ("kind", "key", "rev")


def tool_headers(admin_key: str | None = None) -> dict[str, str]:
    """Headers marking a client as Switchyard's own, for a proxy's reserved-collection rule:
    the admin key (``admin_key``, else env ``SWITCHYARD_ADMIN_KEY`` or the file
    ``SWITCHYARD_ADMIN_KEY_FILE`` names), or ``-`` when none is set (a proxy without an admin key
    needs only the header)."""
    key = admin_key if admin_key is not None else env_secret("SWITCHYARD_ADMIN_KEY", os.environ)
    return {"switchyard-admin-key": key or "-"}


def record_id(kind: str, key: str) -> str:
    """The point id of a record: stable, so every process finds the same point."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}/{key}"))


#: Pooled, kept-alive connections; idle ones retire after 2 s, before Qdrant's own keep-alive
#: (5 s) would close them under a request.
KEEP_ALIVE = httpx.Limits(max_connections=None, max_keepalive_connections=16, keepalive_expiry=2.0)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One stored record: ``data`` is the typed record's JSON form."""

    kind: str
    key: str
    rev: int
    writer: str
    updated_at: float
    data: dict[str, Any]

    def to_payload(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "rev": self.rev,
            "writer": self.writer,
            "updated_at": self.updated_at,
            "data": self.data,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Envelope:
        return cls(
            kind=str(payload["kind"]),
            key=str(payload["key"]),
            rev=int(payload["rev"]),
            writer=str(payload.get("writer", "")),
            updated_at=float(payload.get("updated_at", 0.0)),
            data=dict(payload.get("data") or {}),
        )


class StateStore:
    """Records in ``_switchyard``; every method may raise :class:`UpstreamError`."""

    def __init__(self, client: AsyncQdrantClient, collection: str = STATE_COLLECTION) -> None:
        self._client = client
        self.collection = collection
        self._ready = False

    @property
    def client(self) -> AsyncQdrantClient:
        """The Qdrant client the store talks through (shared with the control plane)."""
        return self._client

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, timeout: float = 10.0,
                admin_key: str | None = None) -> StateStore:
        """A store over a new REST client (``url`` may be Qdrant or a Switchyard proxy).

        The client keeps connections alive (:data:`KEEP_ALIVE`) whatever the host:
        qdrant-client turns keep-alive off for ``localhost`` / ``127.0.0.1``, which makes every
        call of a sidecar (proxy, daemon) next to its Qdrant open a new TCP connection.
        It sends :func:`tool_headers` (``admin_key``) so a proxy lets it reach ``_switchyard``."""
        client = AsyncQdrantClient(
            url=url, api_key=api_key, timeout=int(max(1, timeout)), check_compatibility=False,
            limits=KEEP_ALIVE, metadata=tool_headers(admin_key),
        )
        return cls(client)

    async def close(self) -> None:
        await self._client.close()

    async def ensure(self) -> None:
        """Create ``_switchyard`` on first use (idempotent, safe when two processes race)."""
        if self._ready:
            return
        try:
            if not await self._client.collection_exists(self.collection):
                try:
                    await self._client.create_collection(self.collection, vectors_config={})
                except UnexpectedResponse as exc:
                    if exc.status_code != 409:
                        raise
                for field in _INDEXED_FIELDS:
                    schema = (
                        models.PayloadSchemaType.INTEGER
                        if field == "rev"
                        else models.PayloadSchemaType.KEYWORD
                    )
                    await self._client.create_payload_index(self.collection, field, schema)
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise UpstreamError(f"state store {self.collection!r} unavailable: {exc}") from exc
        self._ready = True

    async def get(self, kind: str, key: str) -> Envelope | None:
        await self.ensure()
        try:
            points = await self._client.retrieve(
                self.collection, [record_id(kind, key)], with_payload=True, with_vectors=False
            )
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise UpstreamError(f"state store read failed: {exc}") from exc
        if not points or not points[0].payload:
            return None
        return Envelope.from_payload(points[0].payload)

    async def require(self, kind: str, key: str) -> Envelope:
        found = await self.get(kind, key)
        if found is None:
            raise NotFound(f"{kind} `{key}` doesn't exist!")
        return found

    async def list(self, kind: str) -> list[Envelope]:
        """Every record of a kind, in key order (scrolls to the end)."""
        await self.ensure()
        flt = models.Filter(
            must=[models.FieldCondition(key="kind", match=models.MatchValue(value=kind))]
        )
        found: list[Envelope] = []
        offset: Any = None
        try:
            while True:
                points, offset = await self._client.scroll(
                    self.collection, scroll_filter=flt, limit=256, offset=offset,
                    with_payload=True, with_vectors=False,
                )
                found.extend(Envelope.from_payload(p.payload) for p in points if p.payload)
                if offset is None:
                    break
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise UpstreamError(f"state store scroll failed: {exc}") from exc
        return sorted(found, key=lambda e: e.key)

    async def create(self, kind: str, key: str, data: dict[str, Any]) -> Envelope:
        """Insert a new record at rev 1; :class:`Conflict` when it exists already."""
        env = Envelope(kind, key, 1, uuid.uuid4().hex, time.time(), data)
        await self._write(env, update_mode=models.UpdateMode.INSERT_ONLY, update_filter=None)
        return await self._confirm(env, f"{kind} `{key}` already exists")

    async def put(self, kind: str, key: str, data: dict[str, Any], expected_rev: int) -> Envelope:
        """Compare-and-set: replace ``data`` only if the stored revision is ``expected_rev``.

        ``expected_rev == 0`` means "must not exist" (same as :meth:`create`).
        """
        if expected_rev == 0:
            return await self.create(kind, key, data)
        env = Envelope(kind, key, expected_rev + 1, uuid.uuid4().hex, time.time(), data)
        flt = models.Filter(
            must=[models.FieldCondition(key="rev", match=models.MatchValue(value=expected_rev))]
        )
        await self._write(env, update_mode=models.UpdateMode.UPDATE_ONLY, update_filter=flt)
        return await self._confirm(env, f"{kind} `{key}` changed since revision {expected_rev}")

    async def upsert(self, kind: str, key: str, data: dict[str, Any]) -> Envelope:
        """Last-writer-wins write for records nobody races on (heartbeats, own checkpoints)."""
        current = await self.get(kind, key)
        rev = (current.rev if current else 0) + 1
        env = Envelope(kind, key, rev, uuid.uuid4().hex, time.time(), data)
        await self._write(env, update_mode=None, update_filter=None)
        return env

    async def upsert_many(self, records: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """Last-writer-wins write of many records in one call (the repair log's batches).

        Their ``rev`` is the write's time in microseconds, so it changes on every rewrite: all a
        reader that deletes "unless rewritten since" needs (``repair_log.resolve``). Never
        compare-and-set on records written this way."""
        if not records:
            return
        await self.ensure()
        rev, writer, now = time.time_ns() // 1000, uuid.uuid4().hex, time.time()
        points = [models.PointStruct(id=record_id(kind, key), vector={},
                                     payload=Envelope(kind, key, rev, writer, now, data).to_payload())
                  for kind, key, data in records]
        try:
            await self._client.upsert(self.collection, points, wait=True)
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise UpstreamError(f"state store write failed: {exc}") from exc

    async def count(self, kind: str, where: Mapping[str, str] | None = None) -> int:
        """How many records of ``kind`` there are whose ``data`` fields equal ``where`` (exact)."""
        await self.ensure()
        must: list[Any] = [models.FieldCondition(key="kind", match=models.MatchValue(value=kind))]
        must += [models.FieldCondition(key=f"data.{k}", match=models.MatchValue(value=v))
                 for k, v in (where or {}).items()]
        try:
            found = await self._client.count(self.collection, count_filter=models.Filter(must=must), exact=True)
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise UpstreamError(f"state store count failed: {exc}") from exc
        return int(found.count)

    async def aliases(self) -> dict[str, str]:
        """Alias name -> collection name, as the upstream reports them now."""
        try:
            found = await self._client.get_aliases()
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise UpstreamError(f"alias listing failed: {exc}") from exc
        return {a.alias_name: a.collection_name for a in found.aliases}

    async def delete(self, kind: str, key: str) -> None:
        await self.ensure()
        try:
            await self._client.delete(
                self.collection, models.PointIdsList(points=[record_id(kind, key)]), wait=True
            )
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise UpstreamError(f"state store delete failed: {exc}") from exc

    async def _write(
        self,
        env: Envelope,
        *,
        update_mode: models.UpdateMode | None,
        update_filter: models.Filter | None,
    ) -> None:
        await self.ensure()
        point = models.PointStruct(
            id=record_id(env.kind, env.key), vector={}, payload=env.to_payload()
        )
        try:
            await self._client.upsert(
                self.collection, [point], wait=True,
                update_filter=update_filter, update_mode=update_mode,
            )
        except (UnexpectedResponse, ResponseHandlingException) as exc:
            raise UpstreamError(f"state store write failed: {exc}") from exc

    async def _confirm(self, env: Envelope, reason: str) -> Envelope:
        stored = await self.get(env.kind, env.key)
        if stored is None:
            raise NotFound(f"{env.kind} `{env.key}` doesn't exist!")
        if stored.writer != env.writer:
            raise Conflict(f"{reason} (now at revision {stored.rev})")
        return stored

