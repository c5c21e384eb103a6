"""How each proxy option's raw value becomes its typed value: :data:`PARSERS`, one per option.

A raw value is what a flag or environment variable gives (a string) or what a TOML/JSON config
file gives (a string, number, bool or list). Each parser returns the option's value or raises
``ValueError`` with a message that says what was expected; ``proxy/config.py`` (``load_config``)
adds the option's name and where the value came from and raises :class:`ConfigError`. Parsers
are pure, except that ``workers = auto`` reads the CPU affinity of this process.

Secrets: :data:`_FILE_VALUE` says how a secret read from a key file becomes its value, and
:data:`_SECRET_SHAPE` is what an error says instead of the parser's message, which would quote
the secret.

Why a module of its own: the value grammar (sizes, HOST:PORT, URLs, seconds, booleans) is
read and changed apart from the option table and the precedence rules in ``proxy/config.py``.
It imports nothing from ``proxy/config.py``, which imports it (no cycle) and re-exports
:func:`parse_size`, :func:`parse_hostport`, :data:`LOG_LEVELS` and :data:`PARSERS`, so
callers keep importing them from there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kib|kb|mib|mb|gib|gb)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kib": 1 << 10, "kb": 1000, "mib": 1 << 20, "mb": 1000**2,
               "gib": 1 << 30, "gb": 1000**3}


# ---------------------------------------------------------------- value parsers (pure)

def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value.strip()


def _optional_str(value: Any) -> str | None:
    text = _str(value)
    return text or None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _positive(value: Any, expected: str, must: str) -> float:
    """A positive, finite number; ``expected`` / ``must`` name it in the two errors."""
    if isinstance(value, bool):
        raise ValueError(f"expected {expected}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected {expected}, got {value!r}") from exc
    if not number > 0 or number == float("inf"):
        raise ValueError(f"must be {must}, got {value!r}")
    return number


def _per_second(value: Any) -> float:
    """A positive, finite rate."""
    return _positive(value, "a rate per second", "a positive rate per second")


def _seconds(value: Any) -> float:
    return _positive(value, "seconds", "a positive number of seconds")


def parse_size(value: Any) -> int:
    """Bytes from an int or a string like ``32MiB`` / ``1000kb``; must be positive."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"expected a size like 32MiB, got {value!r}")
        size = int(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()]
    if size <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return size


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) → (host, port); port 0..65535."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host.strip("[]"), port


def _hostport(value: Any) -> str:
    text = _str(value)
    parse_hostport(text)
    return text


def _url(value: Any) -> str:
    text = _str(value).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {value!r}") from exc
    return text


def _log_level(value: Any) -> str:
    level = _str(value).upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError as exc:
        raise ValueError(f"expected a whole number, got {value!r}") from exc
    if number < 1:
        raise ValueError(f"must be 1 or more, got {value!r}")
    return number


def _urls(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(_url(item) for item in items if str(item).strip())


def _workers(value: Any) -> int:
    """A worker count; ``auto`` is the number of cores this process may run on."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    return _positive_int(value)


def _instance_id(value: Any) -> str:
    text = _str(value)
    if not text:
        raise ValueError("must not be empty")
    return text


def _optional_positive_int(value: Any) -> int | None:
    """A positive whole number, or ``None`` for an empty value (the option's computed default)."""
    return None if value is None or str(value).strip() == "" else _positive_int(value)


PARSERS: dict[str, Callable[[Any], Any]] = {
    "upstream_rest_url": _url,
    "upstream_grpc_address": _hostport,
    "upstream_grpc_tls": _bool,
    "upstream_ca_file": _optional_str,
    "listen_rest": _hostport,
    "listen_grpc": _hostport,
    "tls_cert_file": _optional_str,
    "tls_key_file": _optional_str,
    "admin_key": _optional_str,
    "upstream_timeout": _seconds,
    "max_body_size": parse_size,
    "log_level": _log_level,
    "instance_id": _instance_id,
    "state_cache_ttl": _seconds,
    "heartbeat_interval": _seconds,
    "upstream_api_key": _optional_str,
    "heartbeat_ttl": _seconds,
    "ack_timeout": _seconds,
    "max_active_migrations": _positive_int,
    "webhooks": _urls,
    "spool_dir": _optional_str,
    "intent_fsync": _bool,
    "mirror_secondary_grpc": _bool,
    "repair_log_rate": lambda v: _per_second(v),
    "repair_log_burst": _positive_int,
    "workers": _workers,
    "rest_header_timeout": _seconds,
    "rest_idle_timeout": _seconds,
    "grpc_keepalive_time": _seconds,
    "grpc_max_connection_idle": _seconds,
    "max_inference_text_chars": _optional_positive_int,
    "max_inference_request_chars": _positive_int,
    "credential_check_ttl": _seconds,
    "credential_cache_size": _positive_int,
    "state_max_staleness": _seconds,
    "ready_timeout": _seconds,
    "admin_trust_loopback": _bool,
}


#: How a secret read from a file becomes the option's value (default: the text itself).
_FILE_VALUE: dict[str, Callable[[str], Any]] = {"webhooks": lambda text: _urls(text.replace("\n", ","))}
_SECRET_SHAPE = {"webhooks": "comma- or line-separated http:// or https:// URLs"}
