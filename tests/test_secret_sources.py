"""Keys from files: the proxy's config (``*_file`` at every level) and the other commands'
``--*-key-file`` flags and ``*_FILE`` variables, as tables with an injected file reader."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pytest

from switchyard.proxy.cli import build_parser
from switchyard.proxy.config import load_config
from switchyard.proxy.errors import ConfigError
from switchyard.proxy.secret_sources import add_secret_argument, resolve_secret_args

FILES = {"/s/admin": "from-file\n", "/s/crlf": "crlf-key\r\n", "/s/two": "k\n\n",
         "/s/bare": "no-newline", "/s/up": "up-key\n", "/s/empty": "", "/s/nl": "\n"}


def read(path: str) -> str:
    if path not in FILES:
        raise FileNotFoundError(2, "No such file or directory")
    return FILES[path]


@pytest.mark.parametrize(("argv", "env", "file_text", "expected"), [
    ({"admin_key_file": "/s/admin"}, {}, None, {"admin_key": "from-file"}),
    ({}, {"SWITCHYARD_ADMIN_KEY_FILE": "/s/admin"}, None, {"admin_key": "from-file"}),
    ({}, {}, 'admin_key_file = "/s/admin"', {"admin_key": "from-file"}),
    ({}, {}, '[proxy]\nupstream-api-key-file = "/s/up"', {"upstream_api_key": "up-key"}),
    ({}, {"SWITCHYARD_UPSTREAM_API_KEY_FILE": "/s/up"}, None, {"upstream_api_key": "up-key", "admin_key": None}),
    ({"admin_key_file": "/s/crlf"}, {}, None, {"admin_key": "crlf-key"}),
    ({"admin_key_file": "/s/two"}, {}, None, {"admin_key": "k\n"}),  # one newline only
    ({"admin_key_file": "/s/bare"}, {}, None, {"admin_key": "no-newline"}),
    # precedence across levels: flag (either form) > env (either form) > config file
    ({"admin_key_file": "/s/admin"}, {"SWITCHYARD_ADMIN_KEY": "env-key"}, None, {"admin_key": "from-file"}),
    ({"admin_key": "flag-key"}, {"SWITCHYARD_ADMIN_KEY_FILE": "/s/admin"}, None, {"admin_key": "flag-key"}),
    ({}, {"SWITCHYARD_ADMIN_KEY_FILE": "/s/admin"}, 'admin_key = "file-key"', {"admin_key": "from-file"}),
    ({}, {"SWITCHYARD_ADMIN_KEY": "env-key"}, 'admin_key_file = "/s/admin"', {"admin_key": "env-key"}),
])
def test_keys_from_files(argv: dict[str, Any], env: dict[str, str], file_text: str | None,
                         expected: dict[str, Any]) -> None:
    config = load_config(argv, env, file_text, read_file=read)
    for name, value in expected.items():
        assert getattr(config, name) == value, name


@pytest.mark.parametrize(("argv", "env", "file_text", "message"), [
    ({"admin_key_file": "/s/missing"}, {}, None,
     "admin_key (from flag --admin-key-file): cannot read key file /s/missing: No such file"),
    ({}, {"SWITCHYARD_UPSTREAM_API_KEY_FILE": "/s/missing"}, None,
     "upstream_api_key (from env SWITCHYARD_UPSTREAM_API_KEY_FILE): cannot read key file"),
    ({}, {}, 'admin_key_file = "/s/missing"', "admin_key (from config file key admin_key_file)"),
    ({"admin_key_file": "/s/empty"}, {}, None, "key file /s/empty is empty"),
    ({"admin_key_file": "/s/nl"}, {}, None, "key file /s/nl is empty"),
    ({"admin_key": "a", "admin_key_file": "/s/admin"}, {}, None,
     "admin_key: give flag --admin-key or flag --admin-key-file, not both"),
    ({}, {"SWITCHYARD_ADMIN_KEY": "a", "SWITCHYARD_ADMIN_KEY_FILE": "/s/admin"}, None, "not both"),
    ({}, {}, "admin_key = 123456789", "admin_key (from config file): expected a string"),
])
def test_key_file_errors_name_the_option_never_the_content(
        argv: dict[str, Any], env: dict[str, str], file_text: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(argv, env, file_text, read_file=read)
    assert message in str(err.value)
    for content in ("from-file", "123456789"):
        assert content not in str(err.value)


def test_real_files_undecodable_and_unreadable(tmp_path: Path) -> None:
    binary = tmp_path / "bin.key"
    binary.write_bytes(b"\xff\xfesecret-bytes")
    with pytest.raises(ConfigError) as err:
        load_config({"admin_key_file": str(binary)}, {}, None)
    assert "is not UTF-8 text" in str(err.value) and "secret" not in str(err.value)
    good = tmp_path / "good.key"
    good.write_text("s3cret-from-disk\n")
    good.chmod(0o600)
    assert load_config({"admin_key_file": str(good)}, {}, None).admin_key == "s3cret-from-disk"
    with pytest.raises(ConfigError, match="cannot read key file"):
        load_config({"admin_key_file": str(tmp_path)}, {}, None)  # a directory


def test_secrets_reach_no_repr_and_no_log(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config({"admin_key_file": "/s/admin"}, {"SWITCHYARD_UPSTREAM_API_KEY_FILE": "/s/up"},
                         None, read_file=read)
    assert (config.admin_key, config.upstream_api_key) == ("from-file", "up-key")
    assert "from-file" not in repr(config) and "up-key" not in repr(config)
    assert "from-file" not in str(config)


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["--api-key-file", "/s/up"], {}, "up-key"),
    (["--api-key", " flag "], {}, "flag"),
    ([], {"SWITCHYARD_API_KEY": "env"}, "env"),
    ([], {"SWITCHYARD_API_KEY_FILE": "/s/up"}, "up-key"),
    (["--api-key-file", "/s/admin"], {"SWITCHYARD_API_KEY": "env"}, "from-file"),
    ([], {}, None),
    ([], {"SWITCHYARD_API_KEY": ""}, None),
])
def test_command_secret_flags(argv: list[str], env: dict[str, str], expected: str | None) -> None:
    parser = argparse.ArgumentParser()
    add_secret_argument(parser, "--api-key", env="SWITCHYARD_API_KEY", help="key")
    add_secret_argument(parser, "--other-key", help="no variable")
    args = parser.parse_args(argv)
    resolve_secret_args(args, env, read_file=read)
    assert args.api_key == expected and args.other_key is None


def test_command_secret_errors() -> None:
    parser = argparse.ArgumentParser()
    add_secret_argument(parser, "--api-key", env="SWITCHYARD_API_KEY", help="key")
    for argv, env, message in ((["--api-key", "a", "--api-key-file", "/s/up"], {}, "not both"),
                               ([], {"SWITCHYARD_API_KEY_FILE": "/s/missing"},
                                "api_key (from env SWITCHYARD_API_KEY_FILE): cannot read key file /s/missing")):
        args = parser.parse_args(argv)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            resolve_secret_args(args, env, read_file=read)


@pytest.mark.parametrize("argv", [
    ["migrate", "list", "--admin-key-file", "F"],
    ["backfill", "m-1", "--api-key-file", "F"],
    ["verify", "m-1", "--api-key-file", "F"],
    ["models", "list", "--api-key-file", "F"],
    ["bind", "c", "--model", "m", "--api-key-file", "F"],
    ["upstream", "--api-key-file", "F", "--read-only-api-key-file", "F"],
    ["up", "--api-key-file", "F", "--admin-key-file", "F", "--upstream-api-key-file", "F"],
    ["proxy", "--admin-key-file", "F", "--upstream-api-key-file", "F"],
])
def test_every_key_option_has_a_file_form(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert any(name.endswith("_file") and value == "F" for name, value in vars(args).items())


def test_cli_reads_key_files_before_the_command_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from switchyard.proxy import cli

    missing = tmp_path / "nope.key"
    with caplog.at_level(logging.WARNING):
        code = cli.main(["migrate", "list", "--url", "http://127.0.0.1:9", "--admin-key-file", str(missing)])
    assert code == 2 and f"cannot read key file {missing}" in capsys.readouterr().err


def test_webhooks_are_a_secret_too(caplog: pytest.LogCaptureFixture) -> None:
    hooks = {"/s/hooks": "https://hooks.example.com/services/T0/B0/t0k3n\nhttp://127.0.0.1:9/h?token=q\n"}
    config = load_config({}, {"SWITCHYARD_WEBHOOKS_FILE": "/s/hooks"}, None, read_file=hooks.__getitem__)
    assert config.webhooks == ("https://hooks.example.com/services/T0/B0/t0k3n", "http://127.0.0.1:9/h?token=q")
    assert "t0k3n" not in repr(config)
    assert load_config({"webhooks": "http://a/x,http://b/y"}, {}, None).webhooks == ("http://a/x", "http://b/y")
    with pytest.raises(ConfigError) as err:
        load_config({"webhooks": "ftp://t0k3n@x"}, {}, None)
    assert "expected comma- or line-separated" in str(err.value) and "t0k3n" not in str(err.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.example.com/services/T0/B0/t0k3n", "https://hooks.example.com/..."),
    ("http://u:t0k3n@hook.local:8080", "http://hook.local:8080/..."),
    ("http://hook.local/?token=t0k3n", "http://hook.local/..."),
    ("http://hook.local/", "http://hook.local"),
    ("http://[::1", "<unparsable url>"),
])
def test_redact_url(url: str, shown: str) -> None:
    from switchyard.proxy.secret_sources import redact_url

    assert redact_url(url) == shown


async def test_webhook_failures_log_no_token(caplog: pytest.LogCaptureFixture) -> None:
    from switchyard.proxy.migration.hooks import Hooks

    hooks = Hooks(["http://127.0.0.1:9/services/t0k3n"], retries=0, timeout=1.0)
    with caplog.at_level(logging.WARNING, logger="switchyard.hooks"):
        hooks.notify({"event": "test"})
        await hooks.drain(5.0)
    assert hooks.failed == 1 and "http://127.0.0.1:9/..." in caplog.text and "t0k3n" not in caplog.text


@pytest.mark.parametrize(("env", "expected"), [
    ({"SWITCHYARD_ADMIN_KEY_FILE": "/s/admin"}, "from-file"),
    ({"SWITCHYARD_ADMIN_KEY": " plain "}, "plain"),
    ({}, None),
])
def test_env_secret(env: dict[str, str], expected: str | None) -> None:
    from switchyard.proxy.secret_sources import env_secret

    assert env_secret("SWITCHYARD_ADMIN_KEY", env, read_file=read) == expected


def test_tools_send_the_admin_key_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from switchyard.proxy.state.store import tool_headers

    key = tmp_path / "admin.key"
    key.write_text("k-from-file\n")
    monkeypatch.delenv("SWITCHYARD_ADMIN_KEY", raising=False)
    monkeypatch.setenv("SWITCHYARD_ADMIN_KEY_FILE", str(key))
    assert tool_headers() == {"switchyard-admin-key": "k-from-file"}
    monkeypatch.delenv("SWITCHYARD_ADMIN_KEY_FILE")
    assert tool_headers() == {"switchyard-admin-key": "-"}
