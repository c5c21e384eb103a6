"""``switch-reads --require-eval`` (issue 15): the decision as a table (``eval_guard``), then the
whole path through the CLI on real processes: the session's proxy process, ``migrate plan
--require-eval``, ``verify --repair``, ``migrate eval`` (hashing embedders, merged reads through
the proxy), and each refusal in Qdrant's error shape until a fresh GO lets reads switch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)
from cli_in_process import cli
from eval_setup import eval_setup
from switchyard.proxy._gen.switchyard.v1 import admin_pb2 as pb
from switchyard.proxy._gen.switchyard.v1 import admin_pb2_grpc as pb_grpc
from switchyard.proxy.migration import eval_gate
from switchyard.proxy.migration.eval_guard import DEFAULT_MAX_AGE, refusal, settings
from switchyard.proxy.migration.record import Migration

NOW = 1_000_000.0
GO = {"verdict": "GO", "reasons": ["all checks passed over 8 queries (0 judged)"], "at": NOW - 60}
NO_GO = {"verdict": "NO-GO", "at": NOW - 60,
         "reasons": ["nDCG@10 target - source -0.050 (CI low -0.061) < -0.02: the target may answer worse"]}


@pytest.mark.parametrize(("options", "asked", "max_age", "required", "age"), [
    ({}, None, None, False, DEFAULT_MAX_AGE),
    ({}, True, None, True, DEFAULT_MAX_AGE),
    ({}, False, 60.0, False, 60.0),
    ({"require_eval": True}, None, None, True, DEFAULT_MAX_AGE),
    ({"require_eval": True}, False, None, True, DEFAULT_MAX_AGE),  # the plan's requirement stays
    ({"require_eval": True, "eval_max_age": 600}, None, None, True, 600.0),
    ({"require_eval": True, "eval_max_age": 600}, True, 30.0, True, 30.0),  # the request's age wins
])
def test_settings_table(options: dict[str, Any], asked: bool | None, max_age: float | None, required: bool,
                        age: float) -> None:
    assert settings(options, asked, max_age) == (required, age)


@pytest.mark.parametrize(("record", "max_age", "words"), [
    (None, 3600, "no eval verdict for migration m1: run `switchyard migrate eval m1 [--queries FILE | --sample N]`"),
    (NO_GO, 3600, "the newest eval of migration m1 (60 s ago) is NO-GO (nDCG@10 target - source -0.050"),
    ({**NO_GO, "reasons": []}, 3600, "is NO-GO (no reason recorded)"),
    ({**GO, "at": NOW - 7200}, 3600, "is GO but 2.0 h old (max age 60 min): run `switchyard migrate eval m1"),
    ({**GO, "at": NOW - 61}, 60, "is GO but 61 s old (max age 60 s)"),
    ({**GO, "at": NOW + 3600}, 3600, "stamped 60 min in the future (clock skew?)"),
    ({"verdict": "GO"}, 3600, "has no time stamp"),
    (GO, 3600, None),
    ({**GO, "at": NOW + 10}, 3600, None),  # a little skew between hosts is fine
])
def test_refusal_table(record: dict[str, Any] | None, max_age: float, words: str | None) -> None:
    got = refusal("m1", record, NOW, max_age)
    assert (got is None) if words is None else (got is not None and words in got), got


# -- the CLI on real processes


async def test_switch_reads_needs_a_fresh_go(switchyard: RunningProxy, upstream: Any, prefix: str,  # noqa: F811
                                            tmp_path: Path) -> None:
    mid = ""
    async with eval_setup(switchyard, upstream, prefix, "re", 60, tmp_path) as s:
        b, logical, store, queries, url = s.b, s.logical, s.store, s.queries, s.url
        try:

            code, out, err = await cli("migrate", "plan", logical, "--to-model", b.id, "--require-eval",
                                       "--json", *url)
            assert code == 0, err
            mid = json.loads(out)["migration"]["id"]
            assert json.loads(out)["migration"]["options"] == {"require_eval": True}
            # merged reads: `migrate eval` asks the logical name with B's Document (the proxy embeds)
            for step in (("start", mid), ("verify", mid, "--repair"), ("read-mode", mid, "merged")):
                code, out, err = await cli("migrate", *step, *url)
                assert code == 0, (step, out, err)

            async def switch(*extra: str) -> tuple[int, str]:
                code, out, err = await cli("migrate", "switch-reads", mid, *extra, *url)
                return code, out + err

            code, text = await switch()  # the plan asked for it: no flag needed
            assert code == 1 and f"no eval verdict for migration {mid}: run `switchyard migrate eval {mid} " \
                                 "[--queries FILE | --sample N]`" in text, text
            # the admin API answers in Qdrant's error shape
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{switchyard.rest_url}/switchyard/v1/migrations/{mid}/transition",
                                     json={"name": "switch_reads", "require_eval": True, "max_age": 60}) as resp:
                    body = await resp.json()
                    assert resp.status == 409 and body["status"]["error"].startswith("Refused: no eval verdict"), body
                    assert "time" in body and body.get("result") is None
            async with grpc.aio.insecure_channel(f"127.0.0.1:{switchyard.grpc_port}") as channel:  # and over gRPC
                stub = pb_grpc.AdminStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Transition(pb.TransitionRequest(id=mid, name="switch_reads", require_eval=True,
                                                               max_age=60))
                assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value
                assert "no eval verdict" in (refused.value.details() or ""), refused.value

            code, out, err = await cli("migrate", "eval", mid, "--queries", str(queries), "--min-overlap", "1.01",
                                       *url)
            assert code == 1 and out.startswith("NO-GO"), (out, err)
            code, text = await switch()
            assert code == 1 and "is NO-GO (overlap@10 of target with source" in text, text

            code, out, err = await cli("migrate", "eval", mid, "--queries", str(queries), "--min-overlap", "0",
                                       *url)
            assert code == 0 and out.startswith("GO"), (out, err)
            env = await store.require(eval_gate.KIND, mid)  # as if it had run two hours ago
            await store.upsert(eval_gate.KIND, mid, {**env.data, "at": time.time() - 7200})
            code, text = await switch("--require-eval", "--max-age", "3600")
            assert code == 1 and "is GO but 2.0 h old (max age 60 min)" in text, text
            async with grpc.aio.insecure_channel(f"127.0.0.1:{switchyard.grpc_port}") as channel:
                stub = pb_grpc.AdminStub(channel)  # the request's max_age reaches the guard
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Transition(pb.TransitionRequest(id=mid, name="switch_reads", require_eval=True,
                                                               max_age=1800))
                assert "is GO but 2.0 h old (max age 30 min)" in (refused.value.details() or ""), refused.value
            m = Migration.from_envelope(await store.require(Migration.KIND, mid))
            assert m.phase == "verified" and m.last_refusal is not None and "2.0 h old" in m.last_refusal.reason

            code, out, err = await cli("migrate", "eval", mid, "--queries", str(queries), "--min-overlap", "0",
                                       *url)
            assert code == 0, (out, err)
            code, text = await switch()
            assert code == 0, text
            assert Migration.from_envelope(await store.require(Migration.KIND, mid)).phase == "reads_switched"
            code, out, _ = await cli("migrate", "status", mid, *url)
            assert "switch-reads requires a GO eval younger than 3600s" in out
        finally:
            if mid:
                for back in (("switch-reads", mid, "--back"), ("cancel", mid)):
                    await cli("migrate", *back, *url)
