"""Who may use the admin API: one pure decision, shared by REST, gRPC and the status page.

:func:`admin_verdict` takes the caller's transport peer, the configured admin key and the key the
caller presented, and answers :class:`Verdict` (allowed or not, how, and the reason). The rule:

* **a key is configured**: only a caller presenting it is allowed (compared in constant time);
  a missing or wrong key is :class:`~switchyard.proxy.errors.Unauthorized` (401 / ``UNAUTHENTICATED``),
  from loopback too.
* **no key is configured**: the API is *closed by default*: only a peer on loopback
  (``127.0.0.0/8``, ``::1``, and their IPv4-mapped form) is allowed, and only while
  ``admin_trust_loopback`` is on; everyone else gets :class:`~switchyard.proxy.errors.Forbidden` (403 /
  ``PERMISSION_DENIED``) with a message saying how to open it.

The peer is always the transport's (aiohttp's socket peername, gRPC's ``context.peer()``), never a
header such as ``X-Forwarded-For``: a header is whatever the caller writes. A peer that cannot be
parsed (a Unix socket, an unknown form) counts as not loopback, so the API fails closed.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from switchyard.proxy.errors import Forbidden, SwitchyardError, Unauthorized

HEADER = "switchyard-admin-key"
HOW_TO_OPEN = ("start the proxy with --admin-key-file FILE (or --admin-key, env "
               "SWITCHYARD_ADMIN_KEY_FILE / SWITCHYARD_ADMIN_KEY) and send the key in header "
               f"`{HEADER}`")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one admin access check: ``via`` is ``"key"`` or ``"loopback"`` when allowed."""

    allowed: bool
    via: str | None
    reason: str
    error: SwitchyardError | None = None

    def raise_if_refused(self) -> None:
        if self.error is not None:
            raise self.error


def is_loopback(host: str | None) -> bool:
    """True for ``127.0.0.0/8``, ``::1`` and ``::ffff:127.x.y.z``; False for anything unparsable."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def admin_verdict(peer_host: str | None, configured_key: str | None, presented_key: str | None,
                  *, trust_loopback: bool = True) -> Verdict:
    """May this caller use the admin API? Pure; see the module docstring for the rule."""
    if configured_key:
        if presented_key is not None and hmac.compare_digest(_bytes(configured_key), _bytes(presented_key)):
            return Verdict(True, "key", "admin key matches")
        reason = "admin key missing" if presented_key is None else "admin key does not match"
        return Verdict(False, None, reason, Unauthorized(
            f"Must provide a valid admin key (header `{HEADER}` or `authorization: Bearer`): {reason}"))
    if not trust_loopback:
        reason = "no admin key is configured and admin_trust_loopback is off"
    elif is_loopback(peer_host):
        return Verdict(True, "loopback", f"no admin key configured; peer {peer_host} is on loopback")
    else:
        reason = f"no admin key is configured and peer {peer_host or 'unknown'} is not on loopback"
    return Verdict(False, None, reason, Forbidden(
        f"the admin API is closed: {reason}. To open it, {HOW_TO_OPEN}"))


def _bytes(text: str) -> bytes:
    """UTF-8 that never raises: a header decoded with surrogate escapes must not become a 500."""
    return text.encode("utf-8", "surrogatepass")


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The admin key from ``switchyard-admin-key`` or ``authorization: Bearer <key>``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if HEADER in lowered:
        return lowered[HEADER]
    auth = lowered.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def grpc_peer_host(peer: str | None) -> str | None:
    """The host of a gRPC peer string: ``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` -> host."""
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    rest = unquote(rest)  # gRPC core writes ``ipv6:%5B::1%5D:5000`` (URI-escaped brackets)
    if kind == "ipv4":
        return rest.rpartition(":")[0] or None
    if kind == "ipv6":
        host = rest.rpartition(":")[0]
        return host.strip("[]") or None
    return None  # unix:, unix-abstract:, anything new: not loopback (fail closed)


def socket_peer_host(peername: object) -> str | None:
    """The host of a socket's ``getpeername()`` (a tuple for TCP, a string for Unix sockets)."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None
