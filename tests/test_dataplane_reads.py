"""MergedReader end to end against the session's upstream (REST and gRPC, real collections).

The reader gets the same inputs the executor gives it (call on the logical name, route,
migration, snapshot, forward to the upstream). Expectations are computed from the data set
up here (which documents the target holds, each point's ``side`` payload), never hard-coded.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from qdrant_client import grpc as pb

from dataplane_reads_fixtures import Forwarders, Setup, make_setup
from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
from switchyard.proxy.dataplane.read_transport import MERGE_HEADER
from switchyard.proxy.dataplane.reads import MergedReader
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.snapshot import StateSnapshot
from switchyard.proxy.dataplane.merge import ESTIMATE_DEPTH
from switchyard.proxy.intercept.routes import grpc_collection
from switchyard.proxy.wire import GrpcCall, GrpcReply, RestCall, RestReply

QUERIES = ("cats small quick", "dogs blue", "fish calm old", "birds noisy green", "note 7 lazy")
JSON = (("content-type", "application/json"),)


@dataclass
class Env:
    setup: Setup
    fw: Forwarders
    pool: EmbedderPool
    reader: MergedReader

    async def rest(self, suffix: str, body: Any, *, setup: Setup | None = None,
                   forward: Any = None) -> tuple[int, dict[str, str], Any]:
        s = setup or self.setup
        call = RestCall("POST", f"/collections/{s.logical}{suffix}", "", JSON, orjson.dumps(body))
        reply = await self.reader.rest(call, s.route, s.migration, s.snap, forward or self.fw.rest)
        return reply.status, dict(reply.headers), orjson.loads(reply.body)

    async def direct(self, collection: str, suffix: str, body: Any) -> Any:
        reply = await self.fw.rest(RestCall("POST", f"/collections/{collection}{suffix}", "", JSON,
                                            orjson.dumps(body)))
        assert reply.ok, reply.body
        return orjson.loads(reply.body)["result"]

    async def grpc(self, method: str, msg: Any, response: type[Any]) -> tuple[Any, dict[str, str]]:
        s = self.setup
        call = GrpcCall(f"/qdrant.Points/{method}", msg.SerializeToString(), ())
        reply = await self.reader.grpc(call, s.route, s.migration, s.snap, self.fw.grpc)
        assert reply.ok, (reply.code, reply.details)
        return response.FromString(reply.response), dict(reply.initial_metadata)


async def _env(upstream: Any, prefix: str, **kwargs: Any) -> AsyncIterator[Env]:
    pool = EmbedderPool()
    fw = Forwarders(upstream.rest_url, f"{upstream.grpc_host}:{upstream.grpc_port}")
    reader = MergedReader(pool)
    try:
        setup = await make_setup(upstream.rest_url, prefix, pool, **kwargs)
        yield Env(setup, fw, pool, reader)
    finally:
        await reader.aclose()
        await fw.aclose()
        await pool.aclose()


@pytest.fixture(params=[8, 12], ids=["dims8-8", "dims8-12"])
async def env(request: Any, upstream: Any, prefix: str) -> AsyncIterator[Env]:
    async for e in _env(upstream, prefix, dims_b=request.param):
        yield e


def sides(headers: dict[str, str]) -> tuple[int, int]:
    """(target hits, source hits) from the merge header."""
    found = re.search(r"target=(\d+); source=(\d+)", headers[MERGE_HEADER])
    assert found, headers
    return int(found[1]), int(found[2])


def doc(text: str) -> dict[str, str]:
    return {"text": text, "model": "a"}


def check_target_wins(points: list[dict[str, Any]], migrated: int) -> None:
    """Each document once; migrated documents only in their target version."""
    ids = [p["id"] for p in points]
    assert len(ids) == len(set(ids)), ids
    for p in points:
        expected = "target" if p["id"] < migrated else "source"
        assert p["payload"]["side"] == expected, p


async def test_merged_query_target_wins_even_when_target_did_not_return_it(env: Env) -> None:
    s, exercised = env.setup, 0
    for q in QUERIES:
        status, headers, body = await env.rest(
            "/points/query", {"query": doc(q), "limit": 5, "with_payload": True})
        assert status == 200
        points = body["result"]["points"]
        assert len(points) == 5
        check_target_wins(points, s.migrated)
        scores = [p["score"] for p in points]
        assert scores == sorted(scores, reverse=True)
        assert sides(headers)[0] == max(5, ESTIMATE_DEPTH) and sides(headers)[1] >= 5  # the fetch plan's depths
        # the case the lookup exists for: a source hit of a migrated document the target missed
        vec_a = (await env.pool.embed(s.a, [q]))[0].tolist()
        vec_b = (await env.pool.embed(s.b, [q]))[0].tolist()
        src = await env.direct(s.source, "/points/query", {"query": vec_a, "limit": 5})
        tgt = await env.direct(s.target, "/points/query", {"query": vec_b, "limit": 5})
        tgt_ids = {p["id"] for p in tgt["points"]}
        exercised += sum(1 for p in src["points"] if p["id"] < s.migrated and p["id"] not in tgt_ids)
    assert exercised > 0


async def test_lookup_by_ids_gives_the_same_pages(env: Env) -> None:
    """With one point per document, both lookups find the same documents in the target; the
    migration's lookup mode decides which one runs, and the merge header names it."""
    by_ids = MergedReader(env.pool)
    ids_migration = replace(env.setup.migration, lookup="ids")
    try:
        for q in QUERIES:
            body = {"query": doc(q), "limit": 4, "offset": 2, "with_payload": True}
            _, headers, want = await env.rest("/points/query", body)
            assert headers[MERGE_HEADER].endswith("; lookup=exact")
            s = env.setup
            call = RestCall("POST", f"/collections/{s.logical}/points/query", "", JSON, orjson.dumps(body))
            reply = await by_ids.rest(call, s.route, ids_migration, s.snap, env.fw.rest)
            assert dict(reply.headers)[MERGE_HEADER].endswith("; lookup=ids")
            got = orjson.loads(reply.body)["result"]["points"]
            assert [p["id"] for p in got] == [p["id"] for p in want["result"]["points"]]
            check_target_wins(got, s.migrated)
    finally:
        await by_ids.aclose()


async def test_doc_key_falls_back_to_point_id(upstream: Any, prefix: str) -> None:
    async for e in _env(upstream, prefix, doc_key="no_such_field"):
        for q in QUERIES[:3]:
            status, headers, body = await e.rest(
                "/points/query", {"query": doc(q), "limit": 6, "with_payload": ["side"]})
            assert status == 200
            check_target_wins(body["result"]["points"], e.setup.migrated)
            assert all(set(p["payload"]) == {"side"} for p in body["result"]["points"])


async def test_payload_stripped_when_not_asked(env: Env) -> None:
    _, _, body = await env.rest("/points/query", {"query": doc(QUERIES[0]), "limit": 4})
    assert all("payload" not in p or p["payload"] is None for p in body["result"]["points"])
    _, _, body = await env.rest("/points/query", {"query": doc(QUERIES[0]), "limit": 4,
                                                  "with_payload": ["topic"]})
    assert all(set(p["payload"]) == {"topic"} for p in body["result"]["points"])


async def _tie_free_queries(env: Env, depth: int, wanted: int) -> list[str]:
    """Queries whose top ``depth`` hits on each side have distinct scores, asked of the upstream
    itself. Qdrant promises no order among equal scores, nor that a larger ``limit`` keeps the
    tied points a smaller one returned (a segment's top-k heap keeps whichever it met first;
    only hits from different shards are merged by id), so a page of a merged read is only
    comparable with a slice of a longer read when the hits it was built from are not tied."""
    s, found = env.setup, []
    candidates = [*QUERIES, *(" ".join(t.split()[:3]) for t in s.texts)]
    for q in candidates:
        clean = True
        for collection, model in ((s.source, s.a), (s.target, s.b)):
            vector = (await env.pool.embed(model, [q]))[0].tolist()
            hits = await env.direct(collection, "/points/query", {
                "query": vector, "limit": depth, "params": {"exact": True}})
            scores = [p["score"] for p in hits["points"]]
            clean = clean and len(set(scores)) == len(scores)
        if clean:
            found.append(q)
        if len(found) == wanted:
            return found
    raise AssertionError(f"fewer than {wanted} tie-free queries among {len(candidates)}")


@pytest.mark.parametrize("limit", [2, 3])
async def test_pages_exact_across_offsets(env: Env, limit: int) -> None:
    for q in await _tie_free_queries(env, depth=24, wanted=3):
        _, _, whole = await env.rest("/points/query", {"query": doc(q), "limit": limit * 3})
        pages: list[Any] = []
        for page in range(3):
            _, _, body = await env.rest(
                "/points/query", {"query": doc(q), "limit": limit, "offset": page * limit})
            pages += [p["id"] for p in body["result"]["points"]]
        assert pages == [p["id"] for p in whole["result"]["points"]]


async def test_groups_keep_group_semantics(env: Env) -> None:
    s = env.setup
    for q in QUERIES[:3]:
        status, headers, body = await env.rest("/points/query/groups", {
            "query": doc(q), "group_by": "topic", "group_size": 2, "limit": 3, "with_payload": True})
        assert status == 200, body
        groups = body["result"]["groups"]
        assert 0 < len(groups) <= 3
        assert len({g["id"] for g in groups}) == len(groups)
        best = [g["hits"][0]["score"] for g in groups]
        assert best == sorted(best, reverse=True)
        seen: set[int] = set()
        for g in groups:
            assert 0 < len(g["hits"]) <= 2
            assert all(h["payload"]["topic"] == g["id"] for h in g["hits"])
            check_target_wins(g["hits"], s.migrated)
            assert not seen & {h["id"] for h in g["hits"]}
            seen |= {h["id"] for h in g["hits"]}
        assert MERGE_HEADER in headers


async def test_query_batch_per_sub_request(env: Env) -> None:
    s = env.setup
    raw_a = (await env.pool.embed(s.a, [QUERIES[1]]))[0].tolist()
    status, headers, body = await env.rest("/points/query/batch", {"searches": [
        {"query": doc(QUERIES[0]), "limit": 4, "with_payload": True},
        {"query": raw_a, "limit": 4, "with_payload": True},
    ]})
    assert status == 200, body
    first, second = body["result"]
    check_target_wins(first["points"], s.migrated)
    direct = await env.direct(s.source, "/points/query", {"query": raw_a, "limit": 4})
    assert [p["id"] for p in second["points"]] == [p["id"] for p in direct["points"]]
    header = headers[MERGE_HEADER]
    assert header.startswith(f"[0] target={max(4, ESTIMATE_DEPTH)}; source=")
    assert "[1] target=0; source=" in header and "skipped_target=raw query vector is model a" in header


async def test_legacy_search_and_recommend(env: Env) -> None:
    s = env.setup
    raw_a = (await env.pool.embed(s.a, [QUERIES[2]]))[0].tolist()
    status, headers, body = await env.rest(
        "/points/search", {"vector": raw_a, "limit": 5, "with_payload": True})
    assert status == 200
    direct = await env.direct(s.source, "/points/search", {"vector": raw_a, "limit": 5})
    assert [p["id"] for p in body["result"]] == [p["id"] for p in direct]
    assert "skipped_target=raw query vector is model a" in headers[MERGE_HEADER]
    if s.b.dimensions != s.a.dimensions:  # a model-B vector is recognised by its size
        raw_b = (await env.pool.embed(s.b, [QUERIES[2]]))[0].tolist()
        _, headers, body = await env.rest("/points/search", {"vector": raw_b, "limit": 5,
                                                             "with_payload": True})
        assert "skipped_source=raw query vector is model b" in headers[MERGE_HEADER]
        assert all(p["payload"]["side"] == "target" for p in body["result"])
    # ids need no query vector: both sides answer, each with its own stored vectors
    status, headers, body = await env.rest(
        "/points/recommend", {"positive": [1], "limit": 6, "with_payload": True})
    assert status == 200, body
    assert sides(headers)[0] == max(6, ESTIMATE_DEPTH) and sides(headers)[1] >= 6
    check_target_wins(body["result"], s.migrated)
    # not ranked by similarity (no query: id order): the read authority answers, unmerged
    status, headers, body = await env.rest("/points/query", {"limit": 5})
    direct = await env.direct(s.source, "/points/query", {"limit": 5})
    assert status == 200 and MERGE_HEADER not in headers
    assert body["result"]["points"] == direct["points"]
    status, headers, body = await env.rest("/points/search/batch", {"searches": [
        {"vector": raw_a, "limit": 3}, {"vector": raw_a, "limit": 2, "offset": 1}]})
    assert status == 200
    assert [p["id"] for p in body["result"][0]][1:] == [p["id"] for p in body["result"][1]]


async def test_grpc_matches_rest(env: Env) -> None:
    s = env.setup
    for q in QUERIES[:3]:
        msg = pb.QueryPoints(
            collection_name=s.logical, limit=5, offset=1,
            query=pb.Query(nearest=pb.VectorInput(document=pb.Document(text=q, model="a"))),
            with_payload=pb.WithPayloadSelector(enable=True))
        resp, meta = await env.grpc("Query", msg, pb.QueryResponse)
        _, _, body = await env.rest("/points/query", {"query": doc(q), "limit": 5, "offset": 1})
        assert [p.id.num for p in resp.result] == [p["id"] for p in body["result"]["points"]]
        for p in resp.result:
            assert p.payload["side"].string_value == ("target" if p.id.num < s.migrated else "source")
        assert MERGE_HEADER in meta
    groups = pb.QueryPointGroups(
        collection_name=s.logical, group_by="topic", group_size=2, limit=3,
        query=pb.Query(nearest=pb.VectorInput(document=pb.Document(text=QUERIES[0], model="a"))))
    resp, _ = await env.grpc("QueryGroups", groups, pb.QueryGroupsResponse)
    _, _, body = await env.rest("/points/query/groups", {
        "query": doc(QUERIES[0]), "group_by": "topic", "group_size": 2, "limit": 3})
    assert [[h.id.num for h in g.hits] for g in resp.result.groups] == [
        [h["id"] for h in g["hits"]] for g in body["result"]["groups"]]
    assert all(len(h.payload) == 0 for g in resp.result.groups for h in g.hits)
    raw_a = (await env.pool.embed(s.a, [QUERIES[1]]))[0].tolist()
    batch = pb.SearchBatchPoints(collection_name=s.logical, search_points=[
        pb.SearchPoints(collection_name=s.logical, vector=raw_a, limit=3)])
    resp, meta = await env.grpc("SearchBatch", batch, pb.SearchBatchResponse)
    direct = await env.direct(s.source, "/points/search", {"vector": raw_a, "limit": 3})
    assert [p.id.num for p in resp.result[0].result] == [p["id"] for p in direct]
    assert "skipped_target" in meta[MERGE_HEADER]


async def test_euclid_lower_is_better(upstream: Any, prefix: str) -> None:
    async for e in _env(upstream, prefix, distance="Euclid", dims_b=12):
        for q in QUERIES[:3]:
            _, _, body = await e.rest("/points/query", {"query": doc(q), "limit": 6,
                                                        "with_payload": True})
            points = body["result"]["points"]
            check_target_wins(points, e.setup.migrated)
            scores = [p["score"] for p in points]
            assert scores == sorted(scores)


def _failing(env: Env, collection: str) -> Any:
    async def forward(call: RestCall) -> RestReply:
        if call.path.startswith(f"/collections/{collection}/points/query"):
            return RestReply(500, JSON, b'{"status":{"error":"injected"},"time":0}')
        return await env.fw.rest(call)
    return forward


async def test_failed_source_serves_target_and_failed_target_is_returned(env: Env) -> None:
    s = env.setup
    status, headers, body = await env.rest(
        "/points/query", {"query": doc(QUERIES[0]), "limit": 5, "with_payload": True},
        forward=_failing(env, s.source))
    assert status == 200
    assert all(p["payload"]["side"] == "target" for p in body["result"]["points"])
    assert "skipped_source=upstream error 500" in headers[MERGE_HEADER]
    status, headers, body = await env.rest(
        "/points/query", {"query": doc(QUERIES[0]), "limit": 5}, forward=_failing(env, s.target))
    assert status == 500 and body["status"]["error"] == "injected"


async def test_grpc_failed_source_is_skipped(env: Env) -> None:
    s = env.setup

    async def forward(call: GrpcCall) -> GrpcReply:
        if grpc_collection(call.request) == s.source:
            return GrpcReply(None, "UNAVAILABLE", "injected")
        return await env.fw.grpc(call)

    msg = pb.QueryPoints(collection_name=s.logical, limit=5, with_payload=pb.WithPayloadSelector(enable=True),
                         query=pb.Query(nearest=_doc_input(QUERIES[0])))
    call = GrpcCall("/qdrant.Points/Query", msg.SerializeToString(), ())
    reply = await env.reader.grpc(call, s.route, s.migration, s.snap, forward)
    assert reply.ok
    resp = pb.QueryResponse.FromString(reply.response or b"")
    assert len(resp.result) == 5
    assert all(p.payload["side"].string_value == "target" for p in resp.result)
    assert "skipped_source=upstream error UNAVAILABLE injected" in dict(reply.initial_metadata)[MERGE_HEADER]


def _doc_input(text: str) -> Any:
    return pb.VectorInput(document=pb.Document(text=text, model="a"))


def _sample(name: str, collection: str, outcome: str | None = None) -> float:
    labels = {"collection": collection} | ({"outcome": outcome} if outcome else {})
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_shadow_serves_source_without_waiting_and_records_metrics(env: Env) -> None:
    s = env.setup.with_mode("shadow")
    release = asyncio.Event()

    async def slow_target(call: RestCall) -> RestReply:
        if call.path.startswith(f"/collections/{s.target}/"):
            await release.wait()  # the merged read cannot finish before the client is answered
        return await env.fw.rest(call)

    env.reader.shadow_max_in_flight = 1
    before = _sample("switchyard_shadow_overlap_at_k_count", s.logical)
    dropped = _sample("switchyard_shadow_reads_total", s.logical, "dropped_full")
    query = {"query": doc(QUERIES[0]), "limit": 5, "with_payload": True}
    status, headers, body = await asyncio.wait_for(
        env.rest("/points/query", query, setup=s, forward=slow_target), 30)
    assert status == 200 and MERGE_HEADER not in headers
    assert all(p["payload"]["side"] == "source" for p in body["result"]["points"])
    await asyncio.wait_for(env.rest("/points/query", query, setup=s, forward=slow_target), 30)
    assert _sample("switchyard_shadow_reads_total", s.logical, "dropped_full") == dropped + 1
    assert _sample("switchyard_shadow_overlap_at_k_count", s.logical) == before
    release.set()
    await env.reader.aclose()
    assert _sample("switchyard_shadow_overlap_at_k_count", s.logical) == before + 1
    assert _sample("switchyard_shadow_spearman_count", s.logical) >= 1


async def test_inference_for_a_bound_collection(env: Env) -> None:
    s = env.setup
    snap = StateSnapshot(models={"a": s.a, "b": s.b},
                         bindings={s.source: Binding(s.source, "a")})
    vec = (await env.pool.embed(s.a, [QUERIES[3]]))[0].tolist()
    direct = await env.direct(s.source, "/points/query", {"query": vec, "limit": 4})
    for body, model in (({"query": {"nearest": doc(QUERIES[3])}, "limit": 4}, "a"),
                        ({"query": {"text": QUERIES[3], "model": "hash-a"}, "limit": 4}, "hash-a")):
        call = RestCall("POST", f"/collections/{s.source}/points/query", "", JSON, orjson.dumps(body))
        reply = await env.reader.resolve_inference_rest(call, s.source, snap, env.fw.rest)
        assert reply.ok, (model, reply.body)
        got = orjson.loads(reply.body)["result"]["points"]
        assert [p["id"] for p in got] == [p["id"] for p in direct["points"]]
    msg = pb.QueryPoints(collection_name=s.source, limit=4, query=pb.Query(
        nearest=pb.VectorInput(document=pb.Document(text=QUERIES[3], model="a"))))
    gcall = GrpcCall("/qdrant.Points/Query", msg.SerializeToString(), ())
    greply = await env.reader.resolve_inference_grpc(gcall, s.source, snap, env.fw.grpc)
    assert greply.ok, greply.details
    resp = pb.QueryResponse.FromString(greply.response)
    assert [p.id.num for p in resp.result] == [p["id"] for p in direct["points"]]
    # a model the collection is not bound to is left for Qdrant (which refuses it here)
    unbound = replace(snap, bindings={})
    call = RestCall("POST", f"/collections/{s.source}/points/query", "", JSON,
                    orjson.dumps({"query": doc(QUERIES[3]), "limit": 4}))
    reply = await env.reader.resolve_inference_rest(call, s.source, unbound, env.fw.rest)
    assert not reply.ok
