"""The model spec: which embedding model produced a vector space, and how to call it.

A :class:`ModelSpec` is immutable, validated on construction and JSON-safe through
:meth:`ModelSpec.to_dict` / :meth:`ModelSpec.from_dict` (that dict is what the state store keeps).
Two groups of fields:

* the **vector space**: ``dimensions``, ``distance`` (Qdrant's names), ``normalize`` — these and
  the model's actual vectors make the fingerprint (``switchyard.proxy.embedders.fingerprint``);
* **how to call the provider**: ``provider`` (``openai`` | ``local`` | ``hashing``), ``model``
  and the provider options. They never change the vector space, so they can be tuned freely.

Secrets are never stored: ``api_key_env`` is the *name* of an environment variable holding the
key, read by the HTTP provider when it sends a request. A value that does not look like a variable
name is rejected without echoing it back (it might be the key itself).

Options left ``None`` take the provider's default (see ``docs/embedders.md``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from qdrant_client.http import models as qm

from switchyard.proxy.errors import BadRequest, SwitchyardError

PROVIDERS = ("openai", "local", "hashing")
DISTANCES = ("Cosine", "Dot", "Euclid", "Manhattan")
TRUNCATE_POLICIES = ("end", "error")
POOLINGS = ("auto", "mean", "cls", "none")

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelSpec:
    """An embedding model and its vector space; raises :class:`BadRequest` if invalid."""

    id: str
    provider: str
    model: str
    dimensions: int
    distance: str = "Cosine"
    normalize: bool = True
    version: str = "1"
    fingerprint: str | None = None
    # --- HTTP provider (OpenAI-compatible) ---
    base_url: str | None = None
    api_key_env: str | None = None
    max_batch: int | None = None
    max_tokens_per_batch: int | None = None
    max_concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    timeout_s: float = 30.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    truncate: str = "end"
    pass_dimensions: bool = False
    # --- local provider (ONNX); max_length is also the HTTP provider's approximate input limit ---
    max_length: int | None = None
    tokenizer: str | None = None
    output: str | None = None
    pooling: str = "auto"
    intra_op_threads: int | None = None
    # --- accounting ---
    price_per_million_tokens: float | None = None
    # --- scale-out ---
    #: GPUs (fractions allowed) each embedding actor reserves when the backfill runs with
    #: ``--executor ray`` (Ray schedules the actor on a GPU node and sets its visible devices);
    #: ``None`` or 0 = CPU only. Used by nothing else; never part of the vector space.
    gpus: float | None = None

    def __post_init__(self) -> None:
        problems = spec_problems(self)
        if problems:
            raise BadRequest(f"invalid model spec {self.id!r}: " + "; ".join(problems))

    def __repr__(self) -> str:
        return (
            f"ModelSpec(id={self.id!r}, provider={self.provider!r}, model={self.model!r}, "
            f"dimensions={self.dimensions}, distance={self.distance!r}, normalize={self.normalize}, "
            f"version={self.version!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-safe values (what the state store keeps)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        strict: bool = True,
        error: type[SwitchyardError] = BadRequest,
    ) -> ModelSpec:
        """Build a spec from :meth:`to_dict` output or user input.

        ``strict`` rejects unknown keys (typos); readers of stored specs written by a newer
        version pass ``strict=False`` to ignore them. Problems raise ``error`` (``BadRequest``
        for API input, ``ConfigError`` for start-up configuration).
        """
        if not isinstance(data, Mapping):
            raise error(f"a model spec must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown and strict:
            raise error(f"unknown model spec field(s): {', '.join(map(str, unknown))}")
        missing = [n for n in ("id", "provider", "model", "dimensions") if n not in data]
        if missing:
            raise error(f"model spec is missing required field(s): {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in names}
        try:
            return cls(**kwargs)
        except BadRequest as exc:
            if error is BadRequest:
                raise
            raise error(str(exc.args[0])) from exc

    def vector_params(self) -> qm.VectorParams:
        """Qdrant's vector parameters for a collection holding this model's vectors."""
        return qm.VectorParams(size=self.dimensions, distance=qm.Distance(self.distance))

    def space(self) -> dict[str, Any]:
        """The vector-space fields the fingerprint covers (not id, name, version or provider)."""
        return {"dimensions": self.dimensions, "distance": self.distance, "normalize": self.normalize}


def spec_problems(spec: ModelSpec) -> list[str]:
    """Every problem with ``spec``, in field order; empty when valid. Never echoes secrets."""
    problems: list[str] = []
    problems += _identity_problems(spec)
    problems += _option_problems(spec)
    problems += _provider_problems(spec)
    return problems


def _identity_problems(spec: ModelSpec) -> list[str]:
    out: list[str] = []
    if not isinstance(spec.id, str) or not _ID_RE.match(spec.id):
        out.append("id must be 1-128 characters of letters, digits and ._:@/+- starting with a letter or digit")
    if spec.provider not in PROVIDERS:
        out.append(f"provider must be one of {', '.join(PROVIDERS)}, got {spec.provider!r}")
    if not isinstance(spec.model, str) or not spec.model.strip():
        out.append("model must be a non-empty string")
    if not _is_int(spec.dimensions) or not 1 <= spec.dimensions <= 65536:
        out.append(f"dimensions must be an integer in 1..65536, got {spec.dimensions!r}")
    if spec.distance not in DISTANCES:
        out.append(f"distance must be one of {', '.join(DISTANCES)} (Qdrant's names), got {spec.distance!r}")
    if not isinstance(spec.normalize, bool):
        out.append("normalize must be true or false")
    if not isinstance(spec.version, str) or not spec.version:
        out.append("version must be a non-empty string")
    if spec.fingerprint is not None and (
        not isinstance(spec.fingerprint, str) or not _FINGERPRINT_RE.match(spec.fingerprint)
    ):
        out.append("fingerprint must look like sha256:<64 lower-case hex digits>")
    return out


def _option_problems(spec: ModelSpec) -> list[str]:
    out: list[str] = []
    for name in ("max_batch", "max_tokens_per_batch", "max_concurrency", "max_length", "intra_op_threads"):
        value = getattr(spec, name)
        if value is not None and (not _is_int(value) or value < 1):
            out.append(f"{name} must be a positive integer, got {value!r}")
    for name in ("rpm", "tpm"):
        value = getattr(spec, name)
        if value is not None and (not _is_number(value) or value <= 0):
            out.append(f"{name} must be a positive number, got {value!r}")
    if spec.gpus is not None and (not _is_number(spec.gpus) or spec.gpus < 0):
        out.append(f"gpus must be a non-negative number, got {spec.gpus!r}")
    price = spec.price_per_million_tokens
    if price is not None and (not _is_number(price) or price < 0):
        out.append(f"price_per_million_tokens must be a non-negative number, got {price!r}")
    for name in ("timeout_s", "backoff_base_s", "backoff_max_s"):
        value = getattr(spec, name)
        if not _is_number(value) or value <= 0:
            out.append(f"{name} must be a positive number, got {value!r}")
    if not _is_int(spec.max_retries) or not 0 <= spec.max_retries <= 100:
        out.append(f"max_retries must be an integer in 0..100, got {spec.max_retries!r}")
    if spec.truncate not in TRUNCATE_POLICIES:
        out.append(f"truncate must be one of {', '.join(TRUNCATE_POLICIES)}, got {spec.truncate!r}")
    if not isinstance(spec.pass_dimensions, bool):
        out.append("pass_dimensions must be true or false")
    if spec.pooling not in POOLINGS:
        out.append(f"pooling must be one of {', '.join(POOLINGS)}, got {spec.pooling!r}")
    for name in ("tokenizer", "output"):
        value = getattr(spec, name)
        if value is not None and (not isinstance(value, str) or not value):
            out.append(f"{name} must be a non-empty string")
    return out


def _provider_problems(spec: ModelSpec) -> list[str]:
    out: list[str] = []
    if spec.provider == "openai":
        if not isinstance(spec.base_url, str) or not _is_http_url(spec.base_url):
            out.append("the openai provider needs base_url, an http:// or https:// URL")
    if spec.api_key_env is not None and (not isinstance(spec.api_key_env, str) or not _ENV_RE.match(spec.api_key_env)):
        out.append("api_key_env must be the NAME of an environment variable holding the key (not the key itself)")
    return out


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
