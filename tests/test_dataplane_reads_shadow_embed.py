"""A shadow read embeds the query text with model A once: the served half (read mode source's
read on the source) and the merged read compared in the background share that vector.

Counted by the embedder pool's own counter (``switchyard_embedded_texts_total{model}``), read
after ``MergedReader.aclose`` has let the shadow comparison finish.
"""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import REGISTRY

from dataplane_reads_fixtures import Forwarders, make_setup
from switchyard.proxy.dataplane.embedder_pool import EmbedderPool
from switchyard.proxy.dataplane.reads import MergedReader
from switchyard.proxy.wire import RestCall

JSON = (("content-type", "application/json"),)


def embedded(model: str) -> float:
    return REGISTRY.get_sample_value("switchyard_embedded_texts_total", {"model": model}) or 0.0


def compared(collection: str) -> float:
    return REGISTRY.get_sample_value(
        "switchyard_shadow_reads_total", {"collection": collection, "outcome": "compared"}) or 0.0


async def test_shadow_read_embeds_the_query_once_per_model(upstream: Any, prefix: str) -> None:
    pool = EmbedderPool()
    fw = Forwarders(upstream.rest_url, f"{upstream.grpc_host}:{upstream.grpc_port}")
    try:
        s = (await make_setup(upstream.rest_url, prefix, pool)).with_mode("shadow")
        texts = ["cats small quick", "dogs blue", "cats small quick"]  # one text twice in a batch
        body = {"searches": [{"query": {"text": t, "model": "a"}, "limit": 5, "with_payload": True}
                             for t in texts]}
        reader = MergedReader(pool)
        a, b, done = embedded("a"), embedded("b"), compared(s.logical)
        try:
            call = RestCall("POST", f"/collections/{s.logical}/points/query/batch", "", JSON,
                            orjson.dumps(body))
            reply = await reader.rest(call, s.route, s.migration, s.snap, fw.rest)
            assert reply.ok, reply.body
            served = orjson.loads(reply.body)["result"]
            assert [len(r["points"]) for r in served] == [5, 5, 5]
            assert all(p["payload"]["side"] == "source" for r in served for p in r["points"])
        finally:
            await reader.aclose()  # waits for the shadow comparison
        assert compared(s.logical) == done + len(texts)  # the merged read ran (one per sub-request)
        assert embedded("a") - a == 2  # the two distinct texts, for the served read only
        assert embedded("b") - b == 2  # the target side of the merged read
    finally:
        await fw.aclose()
        await pool.aclose()
