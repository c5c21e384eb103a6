"""The OpenAI-compatible embeddings wire format: URLs, request bodies, response parsing (pure).

Request: ``POST {base}/v1/embeddings`` (or ``{base}/embeddings`` when the base URL already ends
in ``/v1``) with ``{"model", "input": [...], "encoding_format": "float", "dimensions"?}``.
Response: ``{"data": [{"index", "embedding"}, ...], "usage": {...}}``; ``data`` may come in any
order and is put back in input order by ``index``. A base64 ``embedding`` (little-endian
float32, what ``encoding_format="base64"`` returns) is accepted too, since some servers ignore
the requested format.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import orjson


class MalformedResponse(ValueError):
    """The provider answered 2xx with a body that is not a valid embeddings response."""


def endpoint_url(base_url: str) -> str:
    """The embeddings endpoint for a base URL (trailing slashes ignored)."""
    base = base_url.rstrip("/")
    return f"{base}/embeddings" if base.endswith("/v1") else f"{base}/v1/embeddings"


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment: safe for logs and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def request_body(model: str, texts: list[str], dimensions: int | None) -> dict[str, Any]:
    """The JSON body of one embeddings request; ``dimensions`` only when passed through."""
    body: dict[str, Any] = {"model": model, "input": texts, "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def parse_embeddings(raw: bytes, count: int) -> tuple[np.ndarray, int | None]:
    """``(float32 array (count, d) in index order, reported token usage or None)``.

    Raises :class:`MalformedResponse` with a short reason when the body does not fit.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedResponse(f"body is not JSON ({_preview(raw)})") from exc
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise MalformedResponse(f"no 'data' list in the body ({_preview(raw)})")
    if len(data) != count:
        raise MalformedResponse(f"{len(data)} embeddings for {count} inputs")
    rows: list[Any] = [None] * count
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            raise MalformedResponse(f"bad or missing 'index' in a data item: {str(item)[:80]}")
        if rows[index] is not None:
            raise MalformedResponse(f"index {index} appears twice")
        rows[index] = _vector(item.get("embedding"), index)
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise MalformedResponse(f"embeddings of different lengths {sorted(lengths)} in one response")
    return np.stack(rows).astype(np.float32, copy=False), _usage(doc)


def _vector(value: Any, index: int) -> np.ndarray:
    if isinstance(value, str):
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedResponse(f"embedding {index} is a string but not base64") from exc
        if len(decoded) % 4:
            raise MalformedResponse(f"embedding {index} is base64 of {len(decoded)} bytes, not float32s")
        return np.frombuffer(decoded, dtype="<f4")
    if not isinstance(value, list) or not value:
        raise MalformedResponse(f"embedding {index} is not a non-empty list of numbers")
    try:
        vector = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise MalformedResponse(f"embedding {index} has non-numeric components") from exc
    if vector.ndim != 1:
        raise MalformedResponse(f"embedding {index} is not a flat list of numbers")
    return vector


def _usage(doc: dict[str, Any]) -> int | None:
    usage = doc.get("usage")
    if not isinstance(usage, dict):
        return None
    tokens = usage.get("prompt_tokens", usage.get("total_tokens"))
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None


def error_text(raw: bytes) -> str:
    """The provider's error message from an error body (OpenAI's ``error.message`` or a preview)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _preview(raw)
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return _preview(raw)


def _preview(raw: bytes, limit: int = 120) -> str:
    text = raw[:limit].decode("utf-8", "replace").replace("\n", " ")
    return repr(text + ("..." if len(raw) > limit else ""))
