"""``migrate eval`` in every read mode (issue 15): its merged answer is a Document naming model B
sent to the logical name, which the proxy must embed whatever the read mode. In read mode
``source`` the source answers alone, so the proxy embeds the text with A (as a merged read's
source side does) and the merged answer equals the source's."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from qdrant_client import models

from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)
from cli_in_process import cli
from eval_setup import embed_with, eval_setup
from switchyard.proxy.dataplane import query_sample
from switchyard.proxy.migration import eval_gate


async def test_eval_in_every_read_mode(switchyard: RunningProxy, upstream: Any, prefix: str,  # noqa: F811
                                       tmp_path: Path) -> None:
    mid = ""
    async with eval_setup(switchyard, upstream, prefix, "rm", 40, tmp_path) as s:
        a, b, logical, src, store, queries, url = s.a, s.b, s.logical, s.source, s.store, s.queries, s.url
        direct, via = s.direct, s.via
        try:
            code, out, err = await cli("migrate", "plan", logical, "--to-model", b.id, "--json", *url)
            assert code == 0, err
            mid = json.loads(out)["migration"]["id"]
            for step in (("start", mid), ("verify", mid, "--repair")):
                code, out, err = await cli("migrate", *step, *url)
                assert code == 0, (step, out, err)

            # read mode source: a Document naming B is embedded with A and answered by the source
            got = await via.http.search_api.query_points(logical, query_request=models.QueryRequest(
                query=models.Document(text="topic 3", model=b.id), limit=5))
            assert got.result is not None
            qv = (await embed_with(a, ["topic 3"]))[0]
            want = await direct.query_points(src, query=[float(x) for x in qv], limit=5)
            assert [p.id for p in got.result.points] == [p.id for p in want.points]

            code, out, err = await cli("migrate", "eval", mid, *url)  # no file, no shadow sample yet
            assert code == 2 and f"no queries for migration {mid}: pass --queries FILE.jsonl" in err, (out, err)

            for mode in ("source", "shadow", "merged"):
                code, out, err = await cli("migrate", "read-mode", mid, mode, *url)
                assert code == 0, (mode, out, err)
                code, out, err = await cli("migrate", "eval", mid, "--queries", str(queries), "--min-overlap", "0",
                                           "--json", *url)
                assert code == 0, (mode, out, err)
                verdict = json.loads(out)
                assert verdict["verdict"] == "GO" and verdict["queries"] == 7, (mode, verdict)
                if mode != "merged":  # the source answers alone: merged is the source's answer
                    assert verdict["metrics"]["overlap_merged_source"]["mean"] == 1.0, (mode, verdict)
                if mode == "shadow":  # a shadow read keeps its text for `migrate eval` without a file
                    await via.http.search_api.query_points(logical, query_request=models.QueryRequest(
                        query=models.Document(text="topic 5", model=b.id), limit=5))
                    for _ in range(200):  # the first text is flushed at once, by a background task
                        if await store.list(query_sample.KIND):
                            break
                        await asyncio.sleep(0.05)
                    code, out, err = await cli("migrate", "eval", mid, "--sample", "5", "--min-overlap", "0",
                                               "--json", *url)
                    assert code == 0 and 1 <= json.loads(out)["queries"] <= 5, (out, err)
            assert (await store.require(eval_gate.KIND, mid)).data["verdict"] == "GO"
        finally:
            if mid:
                await cli("migrate", "cancel", mid, *url)


def test_reservoir_is_bounded_distinct_and_keeps_no_long_texts() -> None:
    r = query_sample.Reservoir(max_texts=3, max_chars=10)
    for t in ["a", "a", "", "x" * 11, "b", "c", "d", "e", "f"]:
        r.offer(t)
    assert len(r.texts) == 3 and len(set(r.texts)) == 3 and r.seen == 6
    assert all(len(t) <= 10 and t for t in r.texts)
    assert set(r.texts) <= {"a", "b", "c", "d", "e", "f"}
