"""``switchyard doctor``: each finding seeded in a real collection is named with its count.

The pure inspector is table-tested on synthetic points; the command runs as a subprocess
against the session's proxy, over a collection written partly through the proxy (stamped by
the bound model) and partly straight to the upstream (unstamped, another model, a stale
fingerprint), with a wrong-norm vector, a zero vector, a duplicate and a point without text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from switchyard.proxy.inspection.findings import BLOCKS, Inspector, Point, render
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
SPEC = ModelSpec(id="doc-m", provider="hashing", model="doc-m", dimensions=4, distance="Dot",
                 fingerprint="sha256:" + "a" * 64)
UNIT = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
STAMP = {"embedding_model_id": "doc-m", "embedding_fingerprint": SPEC.fingerprint, "text": "t"}


@pytest.mark.parametrize("points, counts", [
    ([Point(1, STAMP, UNIT)], {}),
    ([Point(1, {"text": "t"}, UNIT)], {"unstamped": 1}),
    ([Point(1, STAMP, UNIT), Point(2, {**STAMP, "embedding_model_id": "x"}, -UNIT)],
     {"other_model": 1, "mixed_models": 2}),
    ([Point(1, {**STAMP, "embedding_fingerprint": "sha256:" + "b" * 64}, UNIT)], {"wrong_fingerprint": 1}),
    ([Point(1, STAMP, UNIT * 2)], {"wrong_norm": 1}),
    ([Point(1, STAMP, UNIT * 1.004)], {}),  # float32 rounding is not a finding
    ([Point(1, STAMP, np.zeros(4, np.float32))], {"zero_vector": 1}),
    ([Point(1, STAMP, np.ones(3, np.float32) / np.sqrt(3))], {"wrong_size": 1}),
    ([Point(1, STAMP, None)], {"no_vector": 1}),
    ([Point(1, STAMP, UNIT), Point(2, STAMP, UNIT.copy()), Point(3, STAMP, UNIT.copy())], {"duplicate": 2}),
    ([Point(1, {**STAMP, "text": ""}, UNIT), Point(2, {**STAMP, "text": 3}, UNIT * -1)], {"no_text": 2}),
])
def test_inspector_table(points: list[Point], counts: dict[str, int]) -> None:
    inspector = Inspector("c", SPEC)
    inspector.add(points)
    report = inspector.report()
    assert {f.code: f.count for f in report.findings if f.count} == counts
    assert report.points == len(points)
    assert bool(report.blocking) == any(f.severity == BLOCKS for f in report.findings if f.count)


def test_unbound_collection_reports_metadata_only() -> None:
    inspector = Inspector("c", None)
    inspector.add([Point(1, {"text": "t"}, UNIT * 3), Point(2, {"text": "t", "embedding_model_id": "a"}, UNIT)])
    report = inspector.report()
    assert {f.code: f.count for f in report.findings if f.count} == {"unstamped": 1}
    assert "bound model: (none)" in render(report)


def _doctor(proxy: RunningProxy, collection: str, *extra: str) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "switchyard.proxy", "doctor", collection, "--url", proxy.rest_url,
                           "--json", *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_doctor_names_every_seeded_finding(switchyard: RunningProxy, upstream: Any, prefix: str) -> None:  # noqa: F811
    tag = uuid.uuid4().hex[:6]
    spec = ModelSpec(id=f"doc-{tag}", provider="hashing", model=f"doc-{tag}", dimensions=4, distance="Dot",
                     fingerprint="sha256:" + "c" * 64)
    name = f"{prefix}doctor"
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    via = QdrantClient(url=switchyard.rest_url, check_compatibility=False)
    try:
        direct.create_collection(name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
        switchyard.register_and_bind(spec, Binding(name, spec.id))
        unit = [0.5, 0.5, 0.5, 0.5]
        stamped = [models.PointStruct(id=i, vector=v, payload={"text": f"doc {i}"}) for i, v in [
            (1, unit), (2, [0.0, 1.0, 0.0, 0.0]), (3, [0.0, 0.0, 1.0, 0.0]),
            (4, [2.0, 0.0, 0.0, 0.0]),            # wrong norm
            (5, [0.0, 0.0, 0.0, 0.0]),            # zero vector
            (6, unit),                            # duplicate of 1
        ]] + [models.PointStruct(id=7, vector=[0.0, 0.0, 0.0, -1.0], payload={"title": "no text"})]
        via.upsert(name, stamped, wait=True)      # the proxy stamps the bound model
        direct.upsert(name, [
            models.PointStruct(id=8, vector=[0.0, -1.0, 0.0, 0.0], payload={"text": "raw"}),  # unstamped
            models.PointStruct(id=9, vector=[-1.0, 0.0, 0.0, 0.0],
                               payload={"text": "old", "embedding_model_id": "someone-else"}),
            models.PointStruct(id=10, vector=[0.0, 0.0, -1.0, 0.0],
                               payload={"text": "stale", "embedding_model_id": spec.id,
                                        "embedding_fingerprint": "sha256:" + "0" * 64}),
        ], wait=True)
        status, report = _doctor(switchyard, name)
        found = {f["code"]: (f["count"], f["sample_ids"]) for f in report["findings"]}
        assert found == {
            "unstamped": (1, [8]), "other_model": (1, [9]), "mixed_models": (2, sorted([spec.id, "someone-else"])),
            "wrong_fingerprint": (1, [10]), "wrong_norm": (1, [4]), "zero_vector": (1, [5]),
            "duplicate": (1, [6]), "no_text": (1, [7]),
        }
        assert report["points"] == 10 and report["complete"] and report["model"] == spec.id
        assert status == 1  # missing text blocks a re-embedding migration
        status, partial = _doctor(switchyard, name, "--limit", "3")
        assert partial["points"] == 3 and not partial["complete"] and status == 0
    finally:
        direct.delete_collection(name)
        direct.close()
        via.close()
