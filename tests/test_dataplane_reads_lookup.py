"""The merged read's target lookup asks only for what the target query has not already shown.

When the target query answers before the source does, the documents it returned are known to be
in the target, so the lookup (the one upstream call that has to wait for the source) asks only
for the other source hits' documents, and is not made at all when none are left. The forward
used here holds the source's call until the target's call has answered, so the order is fixed
without any timing; the pages must be what the target-wins rule gives either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest

from dataplane_reads_fixtures import Forwarders, Setup, make_setup
from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
from switchyard.proxy.dataplane.reads import MergedReader
from switchyard.proxy.wire import RestCall, RestReply

JSON = (("content-type", "application/json"),)
QUERIES = ("cats small quick", "dogs blue", "fish calm old", "birds noisy green")


@dataclass
class TargetFirst:
    """A forward that lets the source's query through only after the target's has answered."""

    fw: Forwarders
    setup: Setup
    calls: list[tuple[str, Any]]
    target_done: asyncio.Event

    async def __call__(self, call: RestCall) -> RestReply:
        if call.path.startswith(f"/collections/{self.setup.source}/"):
            await self.target_done.wait()
        reply = await self.fw.rest(call)
        if call.path == f"/collections/{self.setup.target}/points/query":
            self.target_done.set()
        self.calls.append((call.path, orjson.loads(call.body) if call.body else None))
        return reply

    def first_round(self) -> list[tuple[str, Any]]:
        """The calls of the first fetch round (a page not yet exact is fetched again)."""
        out: list[tuple[str, Any]] = []
        for path, body in self.calls:
            if path.endswith("/points/query") and sum(p.endswith("/points/query") for p, _ in out) == 2:
                break
            out.append((path, body))
        return out

    def lookups(self) -> list[Any]:
        """Bodies of the first round's lookup calls (scroll by doc key, retrieve by id)."""
        return [body for path, body in self.first_round()
                if path.startswith(f"/collections/{self.setup.target}/points")
                and not path.endswith("/points/query")]


@dataclass
class Env:
    fw: Forwarders
    pool: EmbedderPool
    reader: MergedReader

    async def merged(self, s: Setup, body: Any) -> tuple[list[Any], TargetFirst]:
        forward = TargetFirst(self.fw, s, [], asyncio.Event())
        call = RestCall("POST", f"/collections/{s.logical}/points/query", "", JSON, orjson.dumps(body))
        reply = await self.reader.rest(call, s.route, s.migration, s.snap, forward)
        assert reply.ok, reply.body
        return orjson.loads(reply.body)["result"]["points"], forward

    async def direct(self, collection: str, body: Any) -> list[Any]:
        reply = await self.fw.rest(RestCall("POST", f"/collections/{collection}/points/query", "",
                                            JSON, orjson.dumps(body)))
        assert reply.ok, reply.body
        return list(orjson.loads(reply.body)["result"]["points"])


@pytest.fixture
async def env(upstream: Any) -> AsyncIterator[Env]:
    pool = EmbedderPool()
    fw = Forwarders(upstream.rest_url, f"{upstream.grpc_host}:{upstream.grpc_port}")
    reader = MergedReader(pool)
    try:
        yield Env(fw, pool, reader)
    finally:
        await reader.aclose()
        await fw.aclose()
        await pool.aclose()


def target_wins(points: list[Any], migrated: int) -> None:
    ids = [p["id"] for p in points]
    assert len(ids) == len(set(ids)), ids
    for p in points:
        assert p["payload"]["side"] == ("target" if p["id"] < migrated else "source"), p


@pytest.mark.parametrize("lookup", ["exact", "ids"])
async def test_lookup_skips_documents_the_target_query_returned(
        env: Env, upstream: Any, prefix: str, lookup: str) -> None:
    s = await make_setup(upstream.rest_url, prefix, env.pool, n=40, migrated=20)
    s = replace(s, migration=replace(s.migration, lookup=lookup))
    asked_total = 0
    for q in QUERIES:
        points, forward = await env.merged(s, {"query": {"text": q, "model": "a"}, "limit": 5,
                                              "with_payload": True})
        target_wins(points, s.migrated)
        vec_a = (await env.pool.embed(s.a, [q]))[0].tolist()
        vec_b = (await env.pool.embed(s.b, [q]))[0].tolist()
        # what each side returned to the reader (the reader asks for these limits, from 0)
        sides = {path: body for path, body in forward.first_round() if path.endswith("/points/query")}
        src = await env.direct(s.source, {**sides[f"/collections/{s.source}/points/query"],
                                          "query": vec_a})
        tgt = await env.direct(s.target, {**sides[f"/collections/{s.target}/points/query"],
                                          "query": vec_b})
        returned = {p["payload"]["doc_id"] for p in tgt}
        unknown = {p["payload"]["doc_id"] for p in src} - returned
        lookups = forward.lookups()
        assert len(lookups) == (1 if unknown else 0)
        for body in lookups:
            if lookup == "exact":
                asked = {k for c in body["filter"]["should"] for k in c["match"]["any"]}
            else:
                asked = {f"d{i}" for i in body["ids"]}
            assert asked == unknown  # every source document not shown by the target, no other
            asked_total += len(asked)
    assert asked_total > 0  # the lookup did run for some query


async def test_no_lookup_when_the_target_query_returned_every_document(
        env: Env, upstream: Any, prefix: str) -> None:
    """Every document migrated and fewer than ``limit``: the target query returns them all."""
    s = await make_setup(upstream.rest_url, prefix, env.pool, n=6, migrated=6)
    for q in QUERIES:
        points, forward = await env.merged(s, {"query": {"text": q, "model": "a"}, "limit": 10,
                                              "with_payload": True})
        assert sorted(p["id"] for p in points) == list(range(6))
        target_wins(points, s.migrated)
        assert forward.lookups() == []
