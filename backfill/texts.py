"""Where the text to embed comes from: a payload field, a Python callable, or an HTTP endpoint.

A fetcher maps a batch of source records to one text per record (``None`` when the record has
none; the backfill then skips it and counts it). Specs on the command line:

- ``module:callable`` -- ``callable(keys, payloads)`` returning a list of texts (or a coroutine of
  one), where ``keys`` are the records' doc keys;
- ``http://host/path`` -- POSTed ``{"keys": [...]}``, answering ``{"texts": {key: text}}``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from qdrant_client import models

from switchyard.proxy.errors import ConfigError, UpstreamError


class TextFetcher(Protocol):
    async def __call__(self, records: Sequence[models.Record]) -> list[str | None]: ...


def _payload(r: models.Record) -> dict[str, Any]:
    return dict(r.payload or {})


class PayloadText:
    """The text is the payload field ``field`` (non-strings count as missing)."""

    def __init__(self, field: str) -> None:
        self.field = field

    async def __call__(self, records: Sequence[models.Record]) -> list[str | None]:
        out: list[str | None] = []
        for r in records:
            value = _payload(r).get(self.field)
            out.append(value if isinstance(value, str) else None)
        return out


class CallableText:
    """Texts from ``fn(keys, payloads)``; sync callables run in a worker thread."""

    def __init__(self, fn: Callable[..., Any], doc_key: str) -> None:
        self.fn, self.doc_key = fn, doc_key

    async def __call__(self, records: Sequence[models.Record]) -> list[str | None]:
        keys = [_payload(r).get(self.doc_key, r.id) for r in records]
        payloads = [_payload(r) for r in records]
        if inspect.iscoroutinefunction(self.fn):
            result = await self.fn(keys, payloads)
        else:
            result = await asyncio.to_thread(self.fn, keys, payloads)
            if inspect.isawaitable(result):
                result = await result
        texts = list(result)
        if len(texts) != len(records):
            raise UpstreamError(f"text fetcher returned {len(texts)} texts for {len(records)} records")
        return [t if isinstance(t, str) else None for t in texts]


class HttpText:
    """Texts from an HTTP endpoint: POST ``{"keys": [...]}`` -> ``{"texts": {key: text}}``."""

    def __init__(self, url: str, doc_key: str, timeout: float = 30.0) -> None:
        self.url, self.doc_key, self.timeout = url, doc_key, timeout

    async def __call__(self, records: Sequence[models.Record]) -> list[str | None]:
        keys = [_payload(r).get(self.doc_key, r.id) for r in records]
        found = await asyncio.to_thread(self._post, keys)
        return [found.get(str(k)) if isinstance(found.get(str(k)), str) else None for k in keys]

    def _post(self, keys: list[Any]) -> dict[str, Any]:
        req = urllib.request.Request(self.url, data=json.dumps({"keys": keys}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            raise UpstreamError(f"text fetcher {self.url} failed: {exc}") from exc
        texts = body.get("texts") if isinstance(body, dict) else None
        return {str(k): v for k, v in (texts or {}).items()}


def make_fetcher(spec: str | None, text_field: str, doc_key: str) -> TextFetcher:
    """The fetcher for a ``--text-fetcher`` spec (``None``: the payload's ``text_field``)."""
    if not spec:
        return PayloadText(text_field)
    if spec.startswith(("http://", "https://")):
        return HttpText(spec, doc_key)
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"--text-fetcher {spec!r}: expected a URL or module:callable")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--text-fetcher {spec!r}: {exc}") from exc
    return CallableText(fn, doc_key)


Fault = Callable[[Sequence[models.Record]], Awaitable[None]]
