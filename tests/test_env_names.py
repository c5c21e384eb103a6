"""Unknown ``SWITCHYARD_*`` variables are reported by name at start-up, for every command; the
registry of known names covers every variable the code reads (grepped from the repository)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from switchyard.proxy import cli
from switchyard.proxy.env_names import known_env_names, unknown_env_messages

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("name", "line"), [
    ("SWITCHYARD_REST_LISTEN", "unknown environment variable SWITCHYARD_REST_LISTEN "
                               "(did you mean SWITCHYARD_LISTEN_REST?)"),
    ("SWITCHYARD_GRPC_LISTEN", "unknown environment variable SWITCHYARD_GRPC_LISTEN "
                               "(did you mean SWITCHYARD_LISTEN_GRPC?)"),
    ("SWITCHYARD_UPSTREAM_GRPC", "unknown environment variable SWITCHYARD_UPSTREAM_GRPC (did you mean "
                                 "SWITCHYARD_UPSTREAM_GRPC_ADDRESS or SWITCHYARD_UPSTREAM_GRPC_TLS?)"),
    ("SWITCHYARD_ADMINKEY", "unknown environment variable SWITCHYARD_ADMINKEY (did you mean SWITCHYARD_ADMIN_KEY?)"),
    ("SWITCHYARD_ZZZ_QQQ", "unknown environment variable SWITCHYARD_ZZZ_QQQ"),
])
def test_unknown_variables_are_named_with_a_suggestion(name: str, line: str) -> None:
    assert unknown_env_messages({name: "value-never-shown", "HOME": "/root"}) == [line]


@pytest.mark.parametrize("name", [
    "SWITCHYARD_URL", "SWITCHYARD_ADMIN_KEY", "SWITCHYARD_ADMIN_KEY_FILE", "SWITCHYARD_API_KEY_FILE",
    "SWITCHYARD_TOKENIZER", "SWITCHYARD_TEST_QDRANT_URL", "SWITCHYARD_TEST_QDRANT_GRPC",
    "SWITCHYARD_UPSTREAM_READERS", "SWITCHYARD_LISTEN_REST", "SWITCHYARD_UPSTREAM_API_KEY_FILE",
    "SWITCHYARD_CONFIG", "SWITCHYARD_ADMIN_TRUST_LOOPBACK"])
def test_known_variables_are_not_reported(name: str) -> None:
    assert unknown_env_messages({name: "x"}) == []


_READS = [
    re.compile(r"""environ\.(?:get|setdefault|pop)\(\s*["'](SWITCHYARD_\w+)"""),
    re.compile(r"""environ\[\s*["'](SWITCHYARD_\w+)["']\s*\]"""),
    re.compile(r"""getenv\(\s*["'](SWITCHYARD_\w+)"""),
    re.compile(r"""^\s*[A-Z_]*ENV[A-Z_]*\s*(?::\s*\w+\s*)?=\s*["'](SWITCHYARD_\w+)["']""", re.M),
]
_SECRET_ENV = re.compile(r"""add_secret_argument\([^)]*env=["'](SWITCHYARD_\w+)["']""", re.S)


def variables_the_code_reads() -> dict[str, str]:
    """``SWITCHYARD_*`` names read by Python code anywhere in the repository -> first file."""
    found: dict[str, str] = {}
    for path in sorted(ROOT.rglob("*.py")):
        if any(part in (".git", ".venv", "build", "_gen") for part in path.parts):
            continue
        text = path.read_text(errors="replace")
        for pattern in _READS:
            for name in pattern.findall(text):
                found.setdefault(name, str(path.relative_to(ROOT)))
        for name in _SECRET_ENV.findall(text):
            found.setdefault(name, str(path.relative_to(ROOT)))
            found.setdefault(name + "_FILE", str(path.relative_to(ROOT)))
    return found


def test_every_variable_the_code_reads_is_registered() -> None:
    reads = variables_the_code_reads()
    # the grep itself works: names read in three different ways are found
    assert {"SWITCHYARD_URL", "SWITCHYARD_TOKENIZER", "SWITCHYARD_TEST_QDRANT_URL",
            "SWITCHYARD_API_KEY_FILE", "SWITCHYARD_UPSTREAM_READERS"} <= set(reads)
    missing = {name: where for name, where in reads.items() if name not in known_env_names()}
    assert missing == {}, f"add these to proxy/env_names.py OTHER_ENV: {missing}"


@pytest.mark.parametrize("argv", [
    ["proxy", "--admin-key-file", "/nonexistent/k"],
    ["up", "--admin-key-file", "/nonexistent/k"],
    ["upstream", "--api-key-file", "/nonexistent/k"],
    ["backfill", "m-1", "--api-key-file", "/nonexistent/k"],
    ["migrate", "list", "--admin-key-file", "/nonexistent/k"],
])
def test_every_command_reports_unknown_variables_at_start_up(
        argv: list[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SWITCHYARD_REST_LISTEN", "0.0.0.0:9")
    with caplog.at_level(logging.WARNING, logger="switchyard.config"):
        code = cli.main(argv)  # the key file is missing: the command stops before doing anything
    assert code == 2 and "cannot read key file /nonexistent/k" in capsys.readouterr().err
    assert ("unknown environment variable SWITCHYARD_REST_LISTEN (did you mean SWITCHYARD_LISTEN_REST?)"
            in caplog.messages)
