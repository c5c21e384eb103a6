"""load_config as a table: precedence flag > env > file > default, parsing, and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from switchyard.proxy.config import INPUT_NAMES, OPTION_HELP, ProxyConfig, load_config, parse_size
from switchyard.proxy.errors import ConfigError

TOML = """
upstream_rest_url = "https://qdrant.internal:6333"
upstream-timeout = 12
[proxy]
max_body_size = "8MiB"
"""
JSON = '{"listen_rest": "127.0.0.1:7000", "upstream_grpc_tls": true, "state_cache_ttl": 0.5}'


@pytest.mark.parametrize(("argv", "env", "file_text", "expected"), [
    ({}, {}, None, {"upstream_rest_url": "http://127.0.0.1:6333", "listen_rest": "127.0.0.1:6333",
                    "listen_grpc": "127.0.0.1:6334", "state_cache_ttl": 2.0, "max_body_size": 32 << 20,
                    "admin_key": None, "admin_trust_loopback": True}),
    ({}, {"SWITCHYARD_ADMIN_TRUST_LOOPBACK": "false"}, None, {"admin_trust_loopback": False}),
    ({}, {}, TOML, {"upstream_rest_url": "https://qdrant.internal:6333", "upstream_timeout": 12.0,
                    "max_body_size": 8 << 20}),
    ({}, {}, JSON, {"listen_rest": "127.0.0.1:7000", "upstream_grpc_tls": True, "state_cache_ttl": 0.5}),
    ({}, {"SWITCHYARD_UPSTREAM_TIMEOUT": "3"}, TOML, {"upstream_timeout": 3.0}),
    ({"upstream_timeout": "4"}, {"SWITCHYARD_UPSTREAM_TIMEOUT": "3"}, TOML, {"upstream_timeout": 4.0}),
    ({"upstream_timeout": None}, {"SWITCHYARD_UPSTREAM_TIMEOUT": "3"}, None, {"upstream_timeout": 3.0}),
    ({}, {"SWITCHYARD_UPSTREAM_GRPC_TLS": "yes"}, None, {"upstream_grpc_tls": True}),
    ({}, {"SWITCHYARD_LOG_LEVEL": "debug"}, None, {"log_level": "DEBUG"}),
    ({"max_body_size": "1000"}, {}, None, {"max_body_size": 1000}),
    ({"upstream_rest_url": "http://q:6333/"}, {}, None, {"upstream_rest_url": "http://q:6333"}),
    ({"instance_id": "pod-a"}, {}, None, {"instance_id": "pod-a"}),
    ({"tls_cert_file": "c.pem", "tls_key_file": "k.pem"}, {}, None,
     {"tls_cert_file": "c.pem", "tls_key_file": "k.pem"}),
    ({"admin_key": ""}, {}, None, {"admin_key": None}),
    ({}, {"SWITCHYARD_UPSTREAM_API_KEY": "k"}, None, {"upstream_api_key": "k"}),
    ({}, {"SWITCHYARD_LISTEN_GRPC": "[::1]:0"}, None, {"listen_grpc": "[::1]:0"}),
])
def test_load_config(argv: dict[str, Any], env: dict[str, str], file_text: str | None,
                     expected: dict[str, Any]) -> None:
    config = load_config(argv, env, file_text)
    for name, value in expected.items():
        assert getattr(config, name) == value, name


@pytest.mark.parametrize(("argv", "env", "file_text", "message"), [
    ({"upstream_rest_url": "ftp://x"}, {}, None, "upstream_rest_url (from flag --upstream-rest-url)"),
    ({}, {"SWITCHYARD_UPSTREAM_TIMEOUT": "-1"}, None, "upstream_timeout (from env SWITCHYARD_UPSTREAM_TIMEOUT)"),
    ({}, {"SWITCHYARD_UPSTREAM_TIMEOUT": "soon"}, None, "expected seconds"),
    ({}, {}, 'listen_rest = "6333"', "listen_rest (from config file): expected HOST:PORT"),
    ({}, {}, 'listen_grpc = "h:70000"', "port out of range"),
    ({}, {}, 'max_body_size = "lots"', "max_body_size (from config file)"),
    ({}, {}, "max_body_size = 0", "must be positive"),
    ({}, {}, 'upstream_grpc_tls = "maybe"', "expected true or false"),
    ({}, {}, 'log_level = "LOUD"', "log_level (from config file)"),
    ({}, {}, 'typo_option = 1', "unknown option(s) typo_option"),
    ({}, {}, "this is [not toml", "config file: cannot parse"),
    ({}, {}, "[1, 2]", "config file"),
    ({"tls_cert_file": "c.pem"}, {}, None, "tls_cert_file and tls_key_file must be given together"),
    ({"state_cache_ttl": "0"}, {}, None, "state_cache_ttl (from flag --state-cache-ttl)"),
    ({"instance_id": " "}, {}, None, "instance_id"),
])
def test_load_config_errors(argv: dict[str, Any], env: dict[str, str], file_text: str | None,
                            message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(argv, env, file_text)
    assert message in str(err.value)


def test_secrets_are_not_in_the_repr() -> None:
    config = load_config({"admin_key": "adm1n-s3cret"}, {"SWITCHYARD_UPSTREAM_API_KEY": "up-s3cret"}, None)
    assert config.admin_key == "adm1n-s3cret" and config.upstream_api_key == "up-s3cret"
    assert "s3cret" not in repr(config)


def test_defaults_are_a_valid_config_and_instance_ids_differ() -> None:
    first, second = load_config({}, {}, None), load_config({}, {}, None)
    assert isinstance(first, ProxyConfig) and first.instance_id != second.instance_id
    assert set(OPTION_HELP) == set(INPUT_NAMES)
    with pytest.raises(AttributeError):
        first.upstream_timeout = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(("text", "size"), [
    ("10", 10), ("2KiB", 2048), ("3 mb", 3_000_000), ("1GiB", 1 << 30), (64, 64)])
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size
