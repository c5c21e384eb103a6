"""Pure header rules shared by the front ends: what is forwarded, and what is never logged.

HTTP/1.1 hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the message, so a
proxy must not forward them: ``Connection`` and every header it names, ``Keep-Alive``,
``Proxy-*``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``. ``Host`` is rewritten to
the upstream's, and ``Content-Length`` is re-emitted by whoever frames the body. ``Expect`` is
answered by our own server, so it is not passed on either.
"""

from __future__ import annotations

from collections.abc import Iterable

from switchyard.proxy.admin.access import HEADER as ADMIN_KEY_HEADER

RawHeaders = Iterable[tuple[bytes, bytes]]

HOP_BY_HOP: frozenset[bytes] = frozenset({
    b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
})
#: Dropped from requests on top of hop-by-hop: we set Host and frame the body ourselves.
REQUEST_DROP: frozenset[bytes] = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
#: Dropped from responses on top of hop-by-hop: aiohttp frames the body to the client.
RESPONSE_DROP: frozenset[bytes] = HOP_BY_HOP | {b"content-length"}

#: Header / metadata names whose values are credentials and never appear in logs.
SECRET_NAMES: frozenset[str] = frozenset({"api-key", "authorization", "proxy-authorization",
                                          "cookie", "set-cookie", ADMIN_KEY_HEADER,
                                          "x-switchyard-admin-key"})
REDACTED = "<redacted>"


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def _filter(raw: RawHeaders, drop: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    headers = list(raw)
    named = _connection_tokens(headers)
    return [(n, v) for n, v in headers
            if (low := n.lower()) not in drop and not low.startswith(b"proxy-") and low not in named]


def request_headers(raw: RawHeaders) -> list[tuple[bytes, bytes]]:
    """Client request headers to send upstream, in order, names as the client spelled them."""
    return _filter(raw, REQUEST_DROP)


def response_headers(raw: RawHeaders) -> list[tuple[bytes, bytes]]:
    """Upstream response headers to send to the client (framing is redone by our server)."""
    return _filter(raw, RESPONSE_DROP)


def redact(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers or metadata safe to log: credential values replaced by ``<redacted>``."""
    return [(k, REDACTED if k.lower() in SECRET_NAMES else v) for k, v in pairs]
