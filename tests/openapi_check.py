"""Check REST responses against Qdrant's OpenAPI spec (``shared/qdrant/openapi.json`` beside the clone).

OpenAPI 3.0 schemas are not JSON Schema: ``nullable: true`` (alone in an ``anyOf`` branch, or
beside a ``type``) has to become a ``null`` type. :func:`to_json_schema` rewrites the spec's
components once; :class:`ResponseChecker` compiles one validator per (method, path, status) and
validates recorded responses. Paths the spec does not list (the legacy search/recommend/discover
family) are exempt and counted separately; non-JSON bodies (``/metrics``, health probes) are
checked for their content type only by the server, not here. A response whose bytes repeat
an earlier one of the same method, path and status but for the top-level ``time`` (its last
member, a number, as every Qdrant response ends) is the same document to the schema, so it is
counted in ``repeats`` and not validated again: the state store's polls alone repeat thousands
of times, and validating every copy took minutes of each CI worker's teardown.

Validation is jsonschema-rs (the Rust validator): on the responses of a CI worker (~30-46k
distinct ones, up to 1.2 GB recorded) Python's ``jsonschema`` took 22-41 s of each worker's
teardown; on a 3,771-response sample the two agree on every response and on 600 mutated ones
(a random leaf given another type), and jsonschema-rs takes 0.26 s against 6.7 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import orjson

_CANDIDATES = [
    os.environ.get("SWITCHYARD_QDRANT_OPENAPI", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "qdrant" / "openapi.json"),  # beside the clone
    "/work/shared/qdrant/openapi.json",
]


def spec_path() -> str:
    """Where Qdrant's spec is: ``SWITCHYARD_QDRANT_OPENAPI``, else ``shared/`` beside the clone."""
    for candidate in _CANDIDATES:
        if candidate and os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError("Qdrant's openapi.json not found; tried " + ", ".join(c for c in _CANDIDATES if c)
                            + " (set SWITCHYARD_QDRANT_OPENAPI)")


def to_json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema fragment as JSON Schema (draft 2020-12): ``nullable`` made explicit."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k not in ("nullable", "example", "format")}
    if node.get("nullable"):
        if "type" in out:
            kinds = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*kinds, "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        elif set(out) - {"description", "default"}:
            out = {"anyOf": [out, {"type": "null"}]}
        else:
            out["type"] = "null"
    return out


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    body: bytes


@dataclass
class ResponseChecker:
    """Collects responses (thread-safe) and validates them against the spec."""

    spec: dict[str, Any] = field(default_factory=lambda: json.load(open(spec_path())))
    recorded: list[Exchange] = field(default_factory=list)
    validated: int = 0
    exempt: int = 0
    repeats: int = 0
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _validators: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    _seen: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._converted = to_json_schema(self.spec)

    def record(self, method: str, path: str, status: int, body: bytes) -> None:
        """The embedded server's ``on_response`` hook."""
        with self._lock:
            self.recorded.append(Exchange(method, path, status, body))

    def check_all(self) -> list[str]:
        """Validate and forget everything recorded so far; returns the failure messages."""
        with self._lock:
            batch, self.recorded = self.recorded, []
        for ex in batch:
            key = _identity(ex)
            if key in self._seen:
                self.repeats += 1
                continue
            self._seen.add(key)
            self._check(ex)
        return self.failures

    def _check(self, ex: Exchange) -> None:
        op = self._converted["paths"].get(ex.path, {}).get(ex.method.lower())
        if op is None:
            self.exempt += 1
            return
        responses = op.get("responses", {})
        key = str(ex.status) if str(ex.status) in responses else (
            "4XX" if 400 <= ex.status < 500 and "4XX" in responses else "default"
        )
        content = responses.get(key, {}).get("content", {})
        if "application/json" not in content:
            self.exempt += 1
            return
        validator = self._validator(ex.method, ex.path, key)
        try:
            data = orjson.loads(ex.body)
        except orjson.JSONDecodeError:
            self.failures.append(f"{ex.method} {ex.path} {ex.status}: body is not JSON: {ex.body[:200]!r}")
            return
        self.validated += 1
        if not validator.is_valid(data):
            err = min(validator.iter_errors(data), key=lambda e: len(e.instance_path))
            where = "/".join(str(p) for p in err.instance_path)
            self.failures.append(
                f"{ex.method} {ex.path} {ex.status}: at /{where}: {err.message[:300]}"
            )

    def _validator(self, method: str, path: str, key: str) -> Any:
        """One validator per response: the converted spec as the root document (its other
        members are keywords a validator ignores), ``$ref`` pointing at the response's schema
        (a JSON pointer in a URI fragment: ``{`` and ``}`` of path templates percent-encoded)."""
        cache_key = (method, path, key)
        if cache_key not in self._validators:
            pointer = "/".join(
                quote(p.replace("~", "~0").replace("/", "~1"), safe="~")
                for p in ("paths", path, method.lower(), "responses", key, "content", "application/json", "schema")
            )
            self._validators[cache_key] = jsonschema_rs.Draft202012Validator({**self._converted, "$ref": f"#/{pointer}"})
        return self._validators[cache_key]


#: the top-level ``time`` member that ends every Qdrant response (``..., "time": 0.0012}``)
_TRAILING_TIME = re.compile(rb',\s*"time"\s*:\s*-?[0-9][0-9.eE+-]*\s*\}\s*$')


def _identity(ex: Exchange) -> bytes:
    """What the schema sees of ``ex``: method, path, status and the body without its trailing
    ``time`` number (bodies differing only there validate alike)."""
    body = _TRAILING_TIME.sub(b"}", ex.body)
    return hashlib.sha256(b"\0".join((ex.method.encode(), ex.path.encode(), str(ex.status).encode(), body))).digest()
