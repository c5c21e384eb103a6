"""embed_report / check_drift (called by the registry CLI) and ``switchyard embed``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from switchyard.proxy.cli import main
from switchyard.proxy.embedders.report import check_drift, embed_report
from switchyard.proxy.errors import BadRequest
from switchyard.proxy.modelspec import ModelSpec

REPO = Path(__file__).resolve().parents[1]
SPEC = ModelSpec(id="demo", provider="hashing", model="demo-seed", dimensions=24, price_per_million_tokens=0.02)


async def test_embed_report() -> None:
    report = await embed_report(SPEC, ["hello world", "a slightly longer sentence about embeddings"])
    assert report["model"] == "demo" and report["shape"] == [2, 24] and report["dtype"] == "float32"
    assert report["norm_min"] == pytest.approx(1.0) and report["norm_max"] == pytest.approx(1.0)
    assert report["texts_per_s"] > 0 and report["approx_tokens"] == 3 + 11
    assert report["approx_cost"] == pytest.approx(14 * 0.02 / 1e6)
    with pytest.raises(BadRequest, match="at least one text"):
        await embed_report(SPEC, [])


async def test_check_drift() -> None:
    recomputed = (await _fingerprint_of(SPEC))
    same, stored, current = await check_drift(dataclasses.replace(SPEC, fingerprint=recomputed))
    assert (same, stored, current) == (True, recomputed, recomputed)
    # the provider now serves another model under the same name: drift
    drifted = dataclasses.replace(SPEC, model="another-seed", fingerprint=recomputed)
    same, stored, current = await check_drift(drifted)
    assert same is False and stored == recomputed and current != recomputed
    with pytest.raises(BadRequest, match="no stored fingerprint"):
        await check_drift(SPEC)


async def _fingerprint_of(spec: ModelSpec) -> str:
    from switchyard.proxy.embedders import fingerprint, make_embedder

    embedder = make_embedder(spec)
    try:
        return await fingerprint(embedder)
    finally:
        await embedder.aclose()


def test_cli_embed_in_process(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec_json = json.dumps({"id": "cli", "provider": "hashing", "model": "s", "dimensions": 8})
    assert main(["embed", "--spec-json", spec_json, "--fingerprint", "--vectors", "one", "two"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == [2, 8] and len(report["vectors"]) == 2 and report["fingerprint"].startswith("sha256:")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec_json)
    assert main(["embed", "--spec-file", str(spec_file), "three"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [1, 8]


@pytest.mark.parametrize(
    ("spec_json", "message"),
    [('{"id": "x", "provider": "hashing", "model": "s", "dimensions": 0}', "dimensions must be"),
     ('{"id": "x", "provider": "hashing"', "cannot read the model spec"),
     ('{"id": "x", "provider": "hashing", "model": "s", "dimensions": 8, "rpn": 5}', "unknown model spec field")],
)
def test_cli_embed_bad_spec_exits_2(spec_json: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", "--spec-json", spec_json, "text"]) == 2
    assert message in capsys.readouterr().err


def test_cli_embed_as_a_real_process() -> None:
    spec_json = json.dumps({"id": "p", "provider": "hashing", "model": "s", "dimensions": 8})
    done = subprocess.run(
        [sys.executable, "-m", "switchyard.proxy", "embed", "--spec-json", spec_json, "hello"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["shape"] == [1, 8]
