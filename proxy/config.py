"""The proxy's configuration: one frozen, validated :class:`ProxyConfig`.

Every option has a command-line flag (``--upstream-rest-url``), an environment variable
(``SWITCHYARD_UPSTREAM_REST_URL``) and a key in an optional config file (TOML or JSON, keys
spelled like the field, top level or under a ``[proxy]`` table). Precedence: flag > env > file >
default. :func:`load_config` is pure (no environment access of its own; key files are read
through an injectable reader) so the whole precedence and validation table is testable; invalid
values raise :class:`ConfigError` naming the option and where the bad value came from, at
start-up rather than on the first request.

Secrets (:data:`SECRET_OPTIONS`) can also be given as a file at every level: ``--admin-key-file``,
``SWITCHYARD_ADMIN_KEY_FILE``, config key ``admin_key_file`` (``proxy/secret_sources.py`` says why
and how the file is read). They never reach ``repr(config)``, logs or status output.
Nothing listens beyond loopback unless configured: both listeners default to ``127.0.0.1``.

This module holds the option table (:class:`ProxyConfig`, :data:`OPTION_HELP`, the names of
flags and variables) and the loading (file parsing, precedence, cross-option rules). How one
raw value becomes an option's typed value is ``proxy/option_parsers.py`` (:data:`PARSERS`), so
the value grammar can be read apart from the precedence; its public names stay importable
from here.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from switchyard.proxy.errors import ConfigError
# Re-exported, still public here: app, supervisor, frontend/server, proxy_command and
# tests/container_check import parse_hostport from this module, tests/test_config parse_size.
from switchyard.proxy.option_parsers import (
    LOG_LEVELS,
    PARSERS,
    _FILE_VALUE,
    _SECRET_SHAPE,
    parse_hostport,
    parse_size,
)
from switchyard.proxy.secret_sources import FILE_SUFFIX, ReadFile, choose_secret, read_key_file

ENV_PREFIX = "SWITCHYARD_"


def default_instance_id() -> str:
    """``hostname-pid-random``: unique per process, readable in heartbeats."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Everything the proxy needs to start. Build it with :func:`load_config`, which validates."""

    upstream_rest_url: str = "http://127.0.0.1:6333"
    upstream_grpc_address: str = "127.0.0.1:6334"
    upstream_grpc_tls: bool = False
    upstream_ca_file: str | None = None
    listen_rest: str = "127.0.0.1:6333"
    listen_grpc: str = "127.0.0.1:6334"
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    admin_key: str | None = field(default=None, repr=False)  # secrets never reach a log line
    upstream_timeout: float = 60.0
    max_body_size: int = 32 << 20
    log_level: str = "INFO"
    instance_id: str = field(default_factory=default_instance_id)
    state_cache_ttl: float = 2.0
    heartbeat_interval: float = 5.0
    upstream_api_key: str | None = field(default=None, repr=False)
    heartbeat_ttl: float = 10.0
    ack_timeout: float = 30.0
    max_active_migrations: int = 3
    webhooks: tuple[str, ...] = field(default=(), repr=False)  # URLs often carry a token
    spool_dir: str | None = None
    intent_fsync: bool = True
    mirror_secondary_grpc: bool = True
    repair_log_rate: float = 100.0
    repair_log_burst: int = 1000
    max_inference_text_chars: int | None = None  # None: what each model's input holds
    max_inference_request_chars: int = 1 << 20
    credential_check_ttl: float = 10.0
    credential_cache_size: int = 4096
    workers: int = 1
    rest_header_timeout: float = 10.0
    rest_idle_timeout: float = 60.0
    grpc_keepalive_time: float = 60.0
    grpc_max_connection_idle: float = 300.0
    state_max_staleness: float | None = None  # None: state_cache_ttl + 3 s (see max_staleness)
    ready_timeout: float = 30.0
    admin_trust_loopback: bool = True

    @property
    def max_staleness(self) -> float:
        """Seconds a state snapshot is trusted before governed writes are refused (fail closed)."""
        if self.state_max_staleness is not None:
            return self.state_max_staleness
        return self.state_cache_ttl + 3.0

    @property
    def listener_tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def upstream_rest_tls(self) -> bool:
        return self.upstream_rest_url.startswith("https://")


#: Option names in the order ``--help`` shows them.
OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ProxyConfig))

#: One-line help per option, shared by the CLI and the docs.
OPTION_HELP: dict[str, str] = {
    "upstream_rest_url": "Qdrant REST base URL, http:// or https:// (default http://127.0.0.1:6333)",
    "upstream_grpc_address": "Qdrant gRPC HOST:PORT (default 127.0.0.1:6334)",
    "upstream_grpc_tls": "use a TLS channel to the upstream gRPC (true/false)",
    "upstream_ca_file": "CA bundle (PEM) to verify the upstream's TLS certificate",
    "listen_rest": "REST listen HOST:PORT (default 127.0.0.1:6333; 0.0.0.0:6333 for every "
                   "interface; port 0 picks one)",
    "listen_grpc": "gRPC listen HOST:PORT (default 127.0.0.1:6334; port 0 picks one)",
    "tls_cert_file": "PEM certificate for TLS on both listeners (needs --tls-key-file)",
    "tls_key_file": "PEM private key for TLS on both listeners",
    "admin_key": "key required by the admin API (/switchyard/v1, switchyard.v1.Admin); without "
                 "one only loopback callers are served. Prefer --admin-key-file",
    "upstream_timeout": "seconds: connect / inactivity timeout towards the upstream (default 60)",
    "max_body_size": "largest body read into memory for an intercepted call, e.g. 32MiB",
    "log_level": "DEBUG, INFO, WARNING, ERROR or CRITICAL",
    "instance_id": "this proxy's id in heartbeats (default hostname-pid-random)",
    "state_cache_ttl": "seconds a cached migration state is trusted (default 2)",
    "heartbeat_interval": "seconds between heartbeats to the state store (default 5)",
    "upstream_api_key": "API key the proxy itself uses for the state store (_switchyard); "
                        "client calls always carry the client's own credentials",
    "heartbeat_ttl": "seconds after which a silent proxy stops counting for acknowledgement (default 10)",
    "ack_timeout": "seconds a transition waits for every live proxy to act on it (default 30)",
    "max_active_migrations": "migrations allowed at once across the state store (default 3)",
    "webhooks": "comma-separated URLs called with JSON on every transition and refusal",
    "spool_dir": "directory of the local repair-log spool (default ~/.switchyard)",
    "intent_fsync": "fdatasync each group of write-ahead intents (default true; false still survives "
                    "kill -9, not a host crash; see docs/dataplane.md for the measured cost)",
    "mirror_secondary_grpc": "write the secondary of a gRPC client's mirrored upsert, and re-read a copy-vectors "
                             "mirror's points, over the upstream's gRPC, vectors as packed floats (default true; "
                             "REST on any gRPC failure)",
    "repair_log_rate": "repair records per second per migration a proxy writes before it records one "
                       "coarse entry (the whole collection needs a verify) instead (default 100)",
    "repair_log_burst": "repair records a migration may write at once above repair_log_rate (default 1000)",
    "max_inference_text_chars": "largest inference-object text the proxy embeds, in characters "
                                "(default: 8 x the model's max_length tokens, at least 8192)",
    "max_inference_request_chars": "largest total inference text of one request, in characters "
                                   "(default 1048576)",
    "credential_check_ttl": "seconds a caller's credential verdict from the upstream is cached "
                            "(default 10)",
    "credential_cache_size": "callers' credential verdicts kept at most (default 4096)",
    "workers": "proxy processes sharing the listeners, a number or 'auto' = cores (default 1)",
    "rest_header_timeout": "seconds a REST client has to send a whole request head (default 10)",
    "rest_idle_timeout": "seconds an idle REST keep-alive connection stays open (default 60)",
    "grpc_keepalive_time": "seconds between keepalive pings on gRPC client connections (default 60)",
    "grpc_max_connection_idle": "seconds a gRPC connection without calls stays open (default 300)",
    "ready_timeout": "seconds start-up waits for the upstream and the state store before it "
                     "gives up with the reason (default 30); the ready line means both answer",
    "state_max_staleness": "seconds the proxy trusts its last read of the migration state; older, "
                           "writes to migrating collections get 503 and heartbeats stop "
                           "(default state_cache_ttl + 3)",
    "admin_trust_loopback": "with no admin key, serve the admin API to loopback callers (default "
                            "true); false refuses everyone until a key is set (shared hosts)",
}

#: Options holding a secret: each also takes ``<name>_file`` (flag, env and config key).
SECRET_OPTIONS: tuple[str, ...] = ("admin_key", "upstream_api_key", "webhooks")
#: The file twins of :data:`SECRET_OPTIONS`, accepted wherever an option is.
SECRET_FILE_OPTIONS: tuple[str, ...] = tuple(name + FILE_SUFFIX for name in SECRET_OPTIONS)
#: Every name a flag, variable or config key may carry (options plus their file twins).
INPUT_NAMES: tuple[str, ...] = OPTION_NAMES + SECRET_FILE_OPTIONS
OPTION_HELP.update({twin: f"file holding {name} (one trailing newline stripped); unlike the "
                          "flag or variable it shows in no process listing"
                    for name, twin in zip(SECRET_OPTIONS, SECRET_FILE_OPTIONS)})


def env_name(option: str) -> str:
    return ENV_PREFIX + option.upper()


def flag_name(option: str) -> str:
    return "--" + option.replace("_", "-")


# ---------------------------------------------------------------- loading

def parse_file(text: str) -> dict[str, Any]:
    """A config file's options: JSON if it starts with ``{``, else TOML; ``[proxy]`` table allowed."""
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file: cannot parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("config file: expected a table of options")
    if isinstance(data.get("proxy"), dict):
        data = {**{k: v for k, v in data.items() if k != "proxy"}, **data["proxy"]}
    options = {str(key).replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(options) - set(INPUT_NAMES))
    if unknown:
        raise ConfigError(f"config file: unknown option(s) {', '.join(unknown)}")
    return options


def load_config(
    argv_values: Mapping[str, Any], env: Mapping[str, str], file_text: str | None,
    read_file: ReadFile = read_key_file,
) -> ProxyConfig:
    """Merge flags > env > file > defaults, parse and validate every option.

    ``argv_values`` maps option names (and the ``*_file`` twins of secrets) to flag values;
    ``None`` means the flag was not given. Key files are read with ``read_file``.
    Raises :class:`ConfigError` naming the option and its source (never a secret's value).
    """
    file_values = parse_file(file_text) if file_text is not None else {}
    chosen: dict[str, Any] = {}
    for name in OPTION_NAMES:
        if name in SECRET_OPTIONS:
            secret = _pick_secret(name, argv_values, env, file_values, read_file)
            if secret is not None:
                chosen[name] = secret
            continue
        raw, source = _pick(name, argv_values, env, file_values)
        if source is None:
            continue
        try:
            chosen[name] = PARSERS[name](raw)
        except ValueError as exc:
            raise ConfigError(f"{name} (from {source}): {exc}") from exc
    config = ProxyConfig(**chosen)
    _check_combinations(config)
    return config


def _pick(
    name: str, argv: Mapping[str, Any], env: Mapping[str, str], file_values: Mapping[str, Any]
) -> tuple[Any, str | None]:
    if argv.get(name) is not None:
        return argv[name], f"flag {flag_name(name)}"
    if env_name(name) in env:
        return env[env_name(name)], f"env {env_name(name)}"
    if name in file_values:
        return file_values[name], "config file"
    return None, None


def _pick_secret(name: str, argv: Mapping[str, Any], env: Mapping[str, str],
                 file_values: Mapping[str, Any], read_file: ReadFile) -> Any:
    """A secret from the first level that has it, as a value or a file (both at one level: error)."""
    twin = name + FILE_SUFFIX
    levels = (
        (argv.get(name), f"flag {flag_name(name)}", argv.get(twin), f"flag {flag_name(twin)}"),
        (env.get(env_name(name)), f"env {env_name(name)}", env.get(env_name(twin)),
         f"env {env_name(twin)}"),
        (file_values.get(name), "config file", file_values.get(twin), f"config file key {twin}"),
    )
    for value, value_source, path, path_source in levels:
        chosen = choose_secret(name, value, value_source, path, path_source, read_file)
        if chosen is None:
            continue
        try:
            if chosen.from_file:
                return _FILE_VALUE.get(name, str)(str(chosen.value))
            return PARSERS[name](chosen.value)
        except ValueError:  # the parser's message would quote the value: a secret
            shape = _SECRET_SHAPE.get(name, "a string")
            raise ConfigError(f"{name} (from {chosen.source}): expected {shape}") from None
    return None


def _check_combinations(config: ProxyConfig) -> None:
    """Rules spanning options: TLS cert and key come together; heartbeats beat within their TTL."""
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        raise ConfigError("tls_cert_file and tls_key_file must be given together")
    if config.heartbeat_interval >= config.heartbeat_ttl:
        raise ConfigError(f"heartbeat_interval ({config.heartbeat_interval:g}s) must be shorter than "
                          f"heartbeat_ttl ({config.heartbeat_ttl:g}s), or live proxies would count as gone")
    if config.max_staleness < config.state_cache_ttl:
        raise ConfigError(f"state_max_staleness ({config.max_staleness:g}s) must be at least "
                          f"state_cache_ttl ({config.state_cache_ttl:g}s), or every refresh would "
                          "briefly refuse writes to migrating collections")
