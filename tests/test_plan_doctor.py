"""``migrate plan`` runs the doctor on the source (issue 15): what blocks (a mixed index, missing
text for an embedding plan: refused unless ``--force``) and what only degrades, as a table over
the doctor's report; then the CLI against the session's proxy process on a seeded source with a
point without text and a point of another model: ``--dry-run``, the refusal and ``--force``
name both."""

from __future__ import annotations

import json
from typing import Any

import pytest
from qdrant_client import models

from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)
from cli_in_process import cli
from eval_setup import bound_source
from switchyard.proxy.migration.planner import PlanRequest, doctor_findings, validate
from switchyard.proxy.migration.record import Migration
from test_migration_phases import facts


def finding(code: str, count: int, ids: list[Any], severity: str = "degrades") -> dict[str, Any]:
    return {"code": code, "title": f"the {code} title", "severity": severity, "count": count,
            "sample_ids": ids, "advice": f"fix {code}"}


REPORT = {"collection": "docs_v1", "model": "a", "points": 2000, "complete": False,
          "models": {"a": 1990, "old": 10},
          "findings": [finding("no_text", 12, [3, 9], "blocks"), finding("other_model", 10, [4]),
                       finding("mixed_models", 2, ["a", "old"]), finding("unstamped", 5, [8]),
                       finding("duplicate", 2, [11], "info")]}
CLEAN = {**REPORT, "findings": [finding("unstamped", 5, [8])], "models": {"a": 1995}}


@pytest.mark.parametrize(("request_", "doctor", "blocks", "degrades"), [
    (PlanRequest("docs", "b"), REPORT, ["no_text", "other_model", "mixed_models"], ["unstamped"]),
    (PlanRequest("docs", "b", text_fetcher="http"), REPORT, ["other_model", "mixed_models"], ["unstamped"]),
    (PlanRequest("docs", "b", copy_vectors=True), REPORT, ["other_model", "mixed_models"], ["unstamped"]),
    (PlanRequest("docs", "b", kind="split"), REPORT, ["other_model", "mixed_models"], ["no_text", "unstamped"]),
    (PlanRequest("docs", kind="copy"), REPORT, ["other_model", "mixed_models"], ["unstamped"]),
    (PlanRequest("docs", "b"), CLEAN, [], ["unstamped"]),
    (PlanRequest("docs", "b"), None, [], []),
])
def test_doctor_findings_table(request_: PlanRequest, doctor: dict[str, Any] | None, blocks: list[str],
                               degrades: list[str]) -> None:
    got = doctor_findings(facts(request=request_, doctor=doctor))
    assert [d["code"] for d in got if d["severity"] == "blocks"] == blocks
    assert [d["code"] for d in got if d["severity"] == "degrades"] == degrades  # info left out


def test_blocking_findings_refuse_unless_forced_and_name_counts_and_ids() -> None:
    reasons = validate(facts(doctor=REPORT))
    assert reasons[0] == ("12 of 2000 scanned point(s) lack the text field `text`: they cannot be re-embedded "
                          "(sample ids 3, 9); add the text, pass --copy-vectors or configure a text fetcher; "
                          "pass --force to plan anyway")
    assert reasons[1].startswith("mixed index: 10 of 2000 scanned point(s) stamped by another model than `a` "
                                 "(sample ids 4)")
    assert reasons[2].startswith("mixed index: 2 models' metadata in `docs_v1` (a (1990), old (10))")
    assert len(reasons) == 3
    assert validate(facts(doctor=REPORT, request=PlanRequest("docs", "b", force=True))) == []
    assert validate(facts(doctor=CLEAN)) == []


# -- the CLI against the session's proxy process


async def test_plan_names_missing_text_and_mixed_model(switchyard: RunningProxy, upstream: Any,  # noqa: F811
                                                       prefix: str) -> None:
    async with bound_source(switchyard, upstream, prefix, "pd", 4) as bound:
        a, b, logical, src = bound.a, bound.b, bound.logical, bound.source
        via, direct, store = bound.via, bound.direct, bound.store
        unit = [0.5, 0.5, 0.5, 0.5]
        good = [models.PointStruct(id=i, vector=unit, payload={"text": f"doc {i}", "doc_id": str(i)})
                for i in range(1, 40)]
        await via.upsert(logical, good, wait=True)  # stamped with A by the proxy
        await via.upsert(logical, [models.PointStruct(id=40, vector=unit, payload={"doc_id": "40", "title": "t"})],
                         wait=True)  # no text
        await direct.upsert(src, [models.PointStruct(  # embedded by another model, written around the proxy
            id=41, vector=unit, payload={"text": "old", "doc_id": "41", "embedding_model_id": "someone-else"})],
            wait=True)
        base = ("migrate", "plan", logical, "--to-model", b.id, "--url", switchyard.rest_url)

        code, out, err = await cli(*base, "--dry-run")
        assert code == 1, err  # a dry run that would be refused exits 1
        assert out.startswith("REFUSED"), out
        assert "1 point(s) lack the text field `text`: they cannot be re-embedded (sample ids 40)" in out
        assert f"mixed index: 1 point(s) stamped by another model than `{a.id}` (sample ids 41)" in out
        assert f"mixed index: 2 models' metadata in `{logical}` ({a.id} (40), someone-else (1))" in out
        assert "doctor (all 41 points): 3 finding(s)" in out

        code, out, err = await cli(*base)
        assert code == 1 and "sample ids 40" in err and "sample ids 41" in err, (out, err)

        code, out, err = await cli(*base, "--force", "--json")
        assert code == 0, err
        report = json.loads(out)
        found = {d["code"]: (d["severity"], d["count"], d["sample_ids"]) for d in report["doctor"]["findings"]}
        assert found == {"no_text": ("blocks", 1, [40]), "other_model": ("blocks", 1, [41]),
                         "mixed_models": ("blocks", 2, sorted([a.id, "someone-else"]))}
        m = Migration.from_envelope(await store.require(Migration.KIND, report["migration"]["id"]))
        forced = [e for e in m.history if e.action == "plan:force"]
        assert len(forced) == 1 and "sample ids 40" in forced[0].reason and "sample ids 41" in forced[0].reason
        code, _, err = await cli("migrate", "cancel", m.id, "--url", switchyard.rest_url)
        assert code == 0, err
