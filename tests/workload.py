"""One representative Qdrant workload, driven through the official client, returning a record.

:func:`run_workload` takes any qdrant-client (``QdrantClient`` or ``AsyncQdrantClient``, REST or
gRPC, remote or ``":memory:"``) and a collection-name prefix, exercises the API surface
Switchyard cares about, and returns a normalised record of every result (JSON-like data: ids as
strings, no point versions, which differ between servers). Two records from the same workload on
different servers must be equal, floats within a tolerance: :func:`assert_congruent`.

Every collection the workload creates starts with the prefix and is deleted at the end, so the
workload can run against a shared Qdrant and be reused for the proxy.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from qdrant_client import AsyncQdrantClient, QdrantClient, models

UUIDS = [
    "1f0e8a52-3c2b-4a71-9d6e-0a1b2c3d4e5f",
    "2a9d4b7c-5e3f-4c82-8b1a-1b2c3d4e5f60",
    "3c8b2d6e-7f40-4d93-9c2b-2c3d4e5f6071",
]


class _Driver:
    """Calls a sync or async client the same way: ``await d.call("upsert", ...)``."""

    def __init__(self, client: QdrantClient | AsyncQdrantClient) -> None:
        self.client = client

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


def _vec(i: int, dim: int) -> list[float]:
    """A deterministic, non-degenerate vector, exact in float32 (integers plus a multiple of
    1/64 that keeps every vector distinct: engines order equal scores differently, so the
    workload must not produce ties)."""
    return [float(((i * 7 + k * 3) % 11) - 5 or 1) + i / 64 for k in range(dim)]


def _payload(i: int) -> dict[str, Any]:
    return {
        "group": i % 3,
        "tag": "even" if i % 2 == 0 else "odd",
        "nested": {"level": i, "name": f"n{i}"},
        "doc_id": f"doc-{i}",
    }


def norm(value: Any) -> Any:
    """Results as plain data: models dumped, ids as strings, versions and null fields dropped.

    An empty payload is dropped too: protobuf maps have no presence, so over gRPC a point whose
    payload was cleared looks exactly like one fetched without payload.
    """
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("version", "shard_key", "order_value") or item is None:
                continue
            if key == "payload" and item == {}:
                continue  # gRPC cannot tell an empty payload map from none
            out[key] = str(item) if key == "id" else norm(item)
        return out
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    return value


async def run_workload(client: QdrantClient | AsyncQdrantClient, prefix: str) -> dict[str, Any]:
    """Run the workload on collections ``{prefix}dense`` / ``{prefix}multi``; return its record."""
    d = _Driver(client)
    rec: dict[str, Any] = {}
    dense, multi, alias = f"{prefix}dense", f"{prefix}multi", f"{prefix}live"
    try:
        await _setup(d, dense, multi)
        await _writes(d, dense, rec)
        await _reads(d, dense, rec)
        await _multi(d, multi, rec)
        await _aliases(d, dense, multi, alias, rec)
        await _conditional_upserts(d, dense, rec)
        await d.call("delete", dense, models.FilterSelector(filter=_must("group", 2)))
        rec["count_after_delete_by_filter"] = norm(await d.call("count", dense, exact=True))
        rec["scroll_all"] = await _scroll_all(d, dense)
    finally:
        for name in (dense, multi):
            await d.call("delete_collection", name)
    rec["exists_after_delete"] = await d.call("collection_exists", dense)
    return rec


def _must(key: str, value: Any) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))])


async def _setup(d: _Driver, dense: str, multi: str) -> None:
    await d.call(
        "create_collection",
        dense,
        vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE),
    )
    await d.call(
        "create_collection",
        multi,
        vectors_config={
            "a": models.VectorParams(size=4, distance=models.Distance.DOT),
            "b": models.VectorParams(size=3, distance=models.Distance.EUCLID),
        },
        sparse_vectors_config={"s": models.SparseVectorParams()},
    )
    # real Qdrant needs an index for facets; the local engine accepts and ignores it
    await d.call("create_payload_index", dense, "group", field_schema=models.PayloadSchemaType.INTEGER)


async def _writes(d: _Driver, dense: str, rec: dict[str, Any]) -> None:
    ids: list[int | str] = [*range(1, 16), *UUIDS]
    points = [
        models.PointStruct(id=pid, vector=_vec(n, 4), payload=_payload(n))
        for n, pid in enumerate(ids, start=1)
    ]
    rec["upsert"] = (await d.call("upsert", dense, points=points)).status.value
    sel = models.PointIdsList(points=[1, 2, UUIDS[0]])
    await d.call("set_payload", dense, payload={"extra": True}, points=sel, key="nested")
    await d.call("set_payload", dense, payload={"color": "red"}, points=_filter_sel("tag", "odd"))
    await d.call("overwrite_payload", dense, payload={"only": 1, "group": 0}, points=[3])
    await d.call("delete_payload", dense, keys=["tag", "nested.name"], points=[4, 5])
    await d.call("clear_payload", dense, points_selector=models.PointIdsList(points=[6]))
    ops = [
        models.UpsertOperation(
            upsert=models.PointsList(
                points=[models.PointStruct(id=100, vector=[1.0, 0.0, 0.0, 1.0], payload={"group": 1})]
            )
        ),
        models.SetPayloadOperation(
            set_payload=models.SetPayload(payload={"batched": "yes"}, points=[100, 7])
        ),
        models.DeleteOperation(delete=models.PointIdsList(points=[8])),
    ]
    rec["batch_update"] = [r.status.value for r in await d.call("batch_update_points", dense, ops)]
    rec["retrieve"] = norm(
        await d.call("retrieve", dense, ids=[1, 2, 3, 4, 5, 6, 7, 8, 100, UUIDS[0]], with_vectors=True)
    )


def _filter_sel(key: str, value: Any) -> models.FilterSelector:
    return models.FilterSelector(filter=_must(key, value))


async def _reads(d: _Driver, dense: str, rec: dict[str, Any]) -> None:
    q = [1.0, 2.0, -1.0, 0.5]
    rec["query"] = norm(await d.call("query_points", dense, query=q, limit=5, with_payload=True))
    flt = models.Filter(
        must=[models.FieldCondition(key="group", match=models.MatchValue(value=1))],
        must_not=[models.FieldCondition(key="nested.level", range=models.Range(gt=12))],
    )
    rec["query_filtered"] = norm(
        await d.call("query_points", dense, query=q, query_filter=flt, limit=10, offset=1)
    )
    rec["query_by_id"] = norm(await d.call("query_points", dense, query=UUIDS[1], limit=3))
    rec["recommend"] = norm(
        await d.call(
            "query_points",
            dense,
            query=models.RecommendQuery(recommend=models.RecommendInput(positive=[1, 2], negative=[9])),
            limit=4,
        )
    )
    rec["groups"] = norm(
        await d.call(
            "query_points_groups", dense, group_by="group", query=q, limit=3, group_size=2,
            with_payload=models.PayloadSelectorInclude(include=["group", "doc_id"]),
        )
    )
    rec["count"] = norm(await d.call("count", dense, count_filter=_must("tag", "odd"), exact=True))
    rec["facet"] = norm(await d.call("facet", dense, key="group", exact=True))
    batch = [
        models.QueryRequest(query=q, limit=2),
        models.QueryRequest(query=[0.0, 1.0, 0.0, 1.0], filter=_must("group", 0), limit=3, with_payload=True),
    ]
    rec["query_batch"] = norm(await d.call("query_batch_points", dense, requests=batch))
    info = await d.call("get_collection", dense)
    rec["info"] = {"points_count": info.points_count, "vectors": norm(info.config.params.vectors)}


async def _multi(d: _Driver, multi: str, rec: dict[str, Any]) -> None:
    n = 12
    batch = models.Batch(
        ids=list(range(1, n + 1)),
        vectors={
            "a": [_vec(i, 4) for i in range(n)],
            "b": [_vec(i + 5, 3) for i in range(n)],
            "s": [models.SparseVector(indices=[i % 5, 7 + i % 3], values=[1.0 + i / 64, 0.5 * (i % 4 + 1)]) for i in range(n)],
        },
        payloads=[_payload(i) for i in range(n)],
    )
    await d.call("upsert", multi, points=batch)
    await d.call(
        "update_vectors", multi,
        points=[models.PointVectors(id=3, vector={"b": [9.0, 9.0, 9.0]})],
    )
    await d.call("delete_vectors", multi, vectors=["a"], points=[4])
    rec["multi_retrieve"] = norm(await d.call("retrieve", multi, ids=[3, 4], with_vectors=True))
    rec["fusion"] = norm(
        await d.call(
            "query_points",
            multi,
            prefetch=[
                models.Prefetch(query=[1.0, 0.5, -1.0, 2.0], using="a", limit=6),
                models.Prefetch(query=models.SparseVector(indices=[1, 8], values=[1.0, 1.0]), using="s", limit=6),
            ],
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            limit=5,
        )
    )
    rec["nested_prefetch"] = norm(
        await d.call(
            "query_points",
            multi,
            prefetch=models.Prefetch(query=[1.0, 1.0, 1.0], using="b", limit=8),
            query=[0.0, 1.0, 0.0, 1.0],
            using="a",
            limit=3,
            with_vectors=["b"],
        )
    )


async def _aliases(d: _Driver, dense: str, multi: str, alias: str, rec: dict[str, Any]) -> None:
    await d.call(
        "update_collection_aliases",
        [models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=dense, alias_name=alias))],
    )
    rec["alias_count_1"] = norm(await d.call("count", alias))
    await d.call(
        "update_collection_aliases",
        [
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)),
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=multi, alias_name=alias)),
        ],
    )
    rec["alias_count_2"] = norm(await d.call("count", alias))
    listed = await d.call("get_collection_aliases", multi)
    rec["alias_list"] = [(a.alias_name == alias, a.collection_name == multi) for a in listed.aliases]
    await d.call(
        "update_collection_aliases",
        [models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))],
    )
    everything = await d.call("get_aliases")
    rec["alias_left"] = [a.alias_name for a in everything.aliases if a.alias_name == alias]


async def _conditional_upserts(d: _Driver, dense: str, rec: dict[str, Any]) -> None:
    await d.call(
        "upsert", dense,
        points=[
            models.PointStruct(id=1, vector=[1.0, 1.0, 1.0, 1.0], payload={"replaced": True}),
            models.PointStruct(id=200, vector=[1.0, 1.0, 1.0, 1.0], payload={"new": True}),
        ],
        update_mode=models.UpdateMode.INSERT_ONLY,
    )
    await d.call(
        "upsert", dense,
        points=[
            models.PointStruct(id=2, vector=[1.0, 1.0, 1.0, 1.0], payload={"filtered": True}),
            models.PointStruct(id=9, vector=[1.0, 1.0, 1.0, 1.0], payload={"filtered": True}),
            models.PointStruct(id=201, vector=[1.0, 1.0, 1.0, 1.0], payload={"new": True}),
        ],
        update_filter=_must("tag", "odd"),
    )
    rec["conditional"] = norm(await d.call("retrieve", dense, ids=[1, 2, 9, 200, 201]))


async def _scroll_all(d: _Driver, name: str) -> list[Any]:
    """Scroll in pages of 4 to the end (bounded: at most 100 pages)."""
    pages: list[Any] = []
    offset = None
    for _ in range(100):
        points, offset = await d.call("scroll", name, limit=4, offset=offset, with_payload=["group"])
        pages.append(norm(points))
        if offset is None:
            return pages
    raise AssertionError("scroll did not reach the end within 100 pages")


def assert_congruent(got: Any, want: Any, path: str = "$", rel: float = 1e-4) -> None:
    """``got == want`` exactly, except floats, which may differ by ``rel`` (float32 transport)."""
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and isinstance(want, (int, float)), f"{path}: {got!r} != {want!r}"
        assert math.isclose(got, want, rel_tol=rel, abs_tol=rel), f"{path}: {got!r} != {want!r}"
        return
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: {got!r} is not an object"
        assert sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_congruent(got[key], want[key], f"{path}.{key}", rel)
        return
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_congruent(g, w, f"{path}[{i}]", rel)
        return
    assert got == want, f"{path}: {got!r} != {want!r}"
