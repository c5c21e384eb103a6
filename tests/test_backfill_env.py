"""Every knob of ``switchyard backfill`` also comes from a ``SWITCHYARD_BACKFILL_*`` variable: the
flag wins over the variable, the variable over the default; a bad value names the variable and
exits 2; every such variable is in the registry of known names (so none is reported unknown)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from switchyard.backfill import command
from switchyard.backfill.settings import DaemonConfig
from switchyard.proxy.env_names import known_env_names, unknown_env_messages


def _parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    return parser.parse_args(["backfill", "m-1", *argv])


@pytest.mark.parametrize(("argv", "environ", "want"), [
    ((), {}, {"batch_size": DaemonConfig().batch_size, "executor": "local", "actors": 2, "owner": None}),
    ((), {"SWITCHYARD_BACKFILL_BATCH_SIZE": "17", "SWITCHYARD_BACKFILL_HOT_RECHECK": "2.5",
          "SWITCHYARD_BACKFILL_OWNER": "daemon-a"}, {"batch_size": 17, "hot_recheck": 2.5, "owner": "daemon-a"}),
    (("--batch-size", "5"), {"SWITCHYARD_BACKFILL_BATCH_SIZE": "17"}, {"batch_size": 5}),  # the flag wins
    ((), {"SWITCHYARD_BACKFILL_METRICS_PORT": "9109", "SWITCHYARD_BACKFILL_METRICS_ADDR": "0.0.0.0"},
     {"metrics_port": 9109, "metrics_addr": "0.0.0.0"}),
])
def test_flag_then_variable_then_default(argv: tuple[str, ...], environ: dict[str, str], want: dict) -> None:
    args = _parsed(*argv)
    command.knobs_from_env(args, environ)
    assert {k: getattr(args, k) for k in want} == want


@pytest.mark.parametrize(("environ", "message"), [
    ({"SWITCHYARD_BACKFILL_BATCH_SIZE": "lots"}, "SWITCHYARD_BACKFILL_BATCH_SIZE: 'lots' is not a valid int"),
    ({"SWITCHYARD_BACKFILL_EXECUTOR": "gpu"}, "executor must be local or ray (got 'gpu')"),
])
def test_a_bad_value_names_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(command.ConfigError, match=re.escape(message)):
        command.knobs_from_env(_parsed(), environ)


def test_every_knob_variable_is_registered_and_covers_every_knob_flag() -> None:
    names = {env for env, _, _ in command.ENV_KNOBS.values()}
    assert names <= known_env_names()
    assert unknown_env_messages(dict.fromkeys(names, "1")) == []
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices["backfill"]  # type: ignore[union-attr]
    flags = {a.dest for a in sub._actions if a.option_strings and a.dest not in
             ("help", "once", "set_batch_size", "url", "api_key", "api_key_file", "state_collection")}
    assert flags == set(command.ENV_KNOBS)


def test_the_daemon_exits_2_naming_a_bad_variable() -> None:
    proc = subprocess.run([sys.executable, "-m", "switchyard.proxy", "backfill", "m-1", "--url", "http://127.0.0.1:9"],
                          env={"PATH": "/usr/bin:/bin", "SWITCHYARD_BACKFILL_LEASE_TTL": "soon"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "SWITCHYARD_BACKFILL_LEASE_TTL: 'soon' is not a valid float" in proc.stderr
