"""The split kind against a real upstream: 3 sources x 2 types -> 6 targets named by the
template, each with its own vector size (per type) and payload indexes on the split fields."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, models

from switchyard.proxy import registry
from switchyard.proxy.dataplane.split_routing import key_id
from switchyard.proxy.errors import UpstreamError
from switchyard.proxy.migration.kinds import split, split_io
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore

A = ModelSpec(id="split-a", provider="hashing", model="a", dimensions=4)
TEXT = ModelSpec(id="split-text", provider="hashing", model="t", dimensions=8)
CODE = ModelSpec(id="split-code", provider="hashing", model="c", dimensions=16)
SOURCES = ("wiki", "news", "docs")
TYPES = ("text", "code")


class World:
    def __init__(self, client: AsyncQdrantClient, store: StateStore, prefix: str) -> None:
        self.client, self.store, self.prefix = client, store, prefix
        self.source = f"{prefix}shared"


def seed_points(n_each: int = 4) -> list[models.PointStruct]:
    out, pid = [], 0
    for s in SOURCES:
        for t in TYPES:
            for i in range(n_each):
                pid += 1
                out.append(models.PointStruct(id=pid, vector=[1.0 + pid % 3, 0.5, (pid % 5) / 5, 0.1],
                                              payload={"source_title": s, "type": t, "doc_id": f"d{pid}",
                                                       "text": f"{s} {t} {i}"}))
    return out


@pytest.fixture
async def world(upstream: Any, prefix: str) -> AsyncIterator[World]:
    client = AsyncQdrantClient(url=upstream.rest_url, check_compatibility=False)
    store = StateStore(client, collection=f"_switchyard_test_{uuid.uuid4().hex[:8]}")
    w = World(client, store, prefix)
    await client.create_collection(w.source, vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    await client.create_payload_index(w.source, "doc_id", models.PayloadSchemaType.KEYWORD)
    await client.upsert(w.source, seed_points(), wait=True)
    for spec in (A, TEXT, CODE):
        await registry.register_model(store, spec)
    await registry.bind(store, client, Binding(w.source, A.id))
    yield w
    await client.delete_collection(store.collection)
    await client.close()


async def plan(w: World, template: str, config: Any) -> tuple[list[split.TargetSpec], list[str]]:
    fields, t = split.key_and_template([], template, w.source)
    found = await split_io.discover(w.client, w.source, fields)
    info = await w.client.get_collection(w.source)
    src_vectors = split_io.vectors_json(info.config.params.vectors)
    schema = {k: {"data_type": str(v.data_type.value if hasattr(v.data_type, "value") else v.data_type)}
              for k, v in (info.payload_schema or {}).items()}
    models_known = {m.id: m for m in (A, TEXT, CODE)}
    specs = split.target_specs(w.source, fields, t, found, src_vectors, schema, config, models_known)
    names = {c.name for c in (await w.client.get_collections()).collections}
    return specs, split.problems(w.source, w.source, specs, found, names, models_known, src_vectors)


async def test_three_sources_by_two_types_make_six_targets(world: World) -> None:
    w = world
    template = w.prefix + "{source_title}_{type}"
    config = {"values": {f"{w.prefix}{s}_code": {"model": CODE.id} for s in SOURCES},
              "default": {"model": TEXT.id}}
    specs, reasons = await plan(w, template, config)
    assert reasons == []
    assert {s.name for s in specs} == {f"{w.prefix}{s}_{t}" for s in SOURCES for t in TYPES}
    assert all(s.points == 4 for s in specs)
    await split_io.create_targets(w.client, w.store, w.source, specs, A.id, False, "")
    for s in SOURCES:
        for t in TYPES:
            info = await w.client.get_collection(f"{w.prefix}{s}_{t}")
            assert info.config.params.vectors.size == (16 if t == "code" else 8)  # type: ignore[union-attr]
            schema = info.payload_schema or {}
            assert {"source_title", "type", "doc_id"} <= set(schema), schema
            assert str(schema["type"].data_type.value) == "keyword"
            binding = await w.store.get(Binding.KIND, f"{w.prefix}{s}_{t}")
            assert binding is not None and binding.data["model_id"] == (CODE.id if t == "code" else TEXT.id)
    layout = split.layout_of(("source_title", "type"), specs)
    assert layout.targets[key_id(["news", "code"])] == f"{w.prefix}news_code"


async def test_missing_field_and_taken_name_refuse_before_creating(world: World) -> None:
    w = world
    await w.client.upsert(w.source, [models.PointStruct(id=999, vector=[1, 0, 0, 0], payload={"type": "text"})],
                          wait=True)
    await w.client.create_collection(f"{w.prefix}wiki_text", vectors_config=models.VectorParams(
        size=4, distance=models.Distance.COSINE))
    specs, reasons = await plan(w, w.prefix + "{source_title}_{type}", None)
    text = "\n".join(reasons)
    assert "1 of 25 source points lack a split field" in text
    assert f"`{w.prefix}wiki_text`: a collection or alias of that name exists" in text


async def test_scroll_discovery_is_bounded(world: World) -> None:
    found = await split_io._by_scroll(world.client, world.source, ["source_title"], bound=5)
    assert found.scanned == 5 and not found.complete and found.method == "scroll"
    full = await split_io._by_scroll(world.client, world.source, ["source_title", "type"], bound=1000)
    assert full.complete and len(full.keys) == 6 and sum(full.keys.values()) == 24


async def test_create_failure_removes_what_it_made(world: World) -> None:
    w = world
    specs, _ = await plan(w, w.prefix + "{source_title}_{type}", None)
    await w.client.create_collection(specs[2].name, vectors_config=models.VectorParams(
        size=4, distance=models.Distance.COSINE))
    with pytest.raises(UpstreamError, match=specs[2].name):
        await split_io.create_targets(w.client, w.store, w.source, specs, A.id, False, "")
    names = {c.name for c in (await w.client.get_collections()).collections}
    assert specs[0].name not in names and specs[1].name not in names and specs[2].name in names
