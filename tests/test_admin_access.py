"""Who may use the admin API: the pure verdict as a table, and the peer parsers it relies on."""

from __future__ import annotations

import pytest

from switchyard.proxy.admin.access import admin_verdict, grpc_peer_host, is_loopback, key_from_headers, socket_peer_host
from switchyard.proxy.errors import Forbidden, Unauthorized

K = "adm1n-k3y"


@pytest.mark.parametrize(("peer", "configured", "presented", "trust", "allowed", "via", "error", "says"), [
    # no key configured: loopback only (the default), whatever key is presented
    ("127.0.0.1", None, None, True, True, "loopback", None, "loopback"),
    ("127.8.9.10", None, None, True, True, "loopback", None, "loopback"),
    ("::1", None, None, True, True, "loopback", None, "loopback"),
    ("::ffff:127.0.0.1", None, None, True, True, "loopback", None, "loopback"),
    ("127.0.0.1", None, "anything", True, True, "loopback", None, "loopback"),
    ("10.0.0.5", None, None, True, False, None, Forbidden, "--admin-key-file"),
    ("192.168.1.2", None, "guess", True, False, None, Forbidden, "not on loopback"),
    ("2001:db8::1", None, None, True, False, None, Forbidden, "--admin-key"),
    ("::ffff:10.0.0.5", None, None, True, False, None, Forbidden, "not on loopback"),
    ("0.0.0.0", None, None, True, False, None, Forbidden, "not on loopback"),
    (None, None, None, True, False, None, Forbidden, "peer unknown"),
    ("localhost", None, None, True, False, None, Forbidden, "not on loopback"),  # names are not peers
    # loopback trust off: nobody without a key
    ("127.0.0.1", None, None, False, False, None, Forbidden, "admin_trust_loopback is off"),
    ("::1", None, "x", False, False, None, Forbidden, "SWITCHYARD_ADMIN_KEY_FILE"),
    # a key configured: the key decides, from anywhere (loopback is no exception)
    ("127.0.0.1", K, K, True, True, "key", None, "matches"),
    ("10.0.0.5", K, K, True, True, "key", None, "matches"),
    ("10.0.0.5", K, K, False, True, "key", None, "matches"),
    ("127.0.0.1", K, None, True, False, None, Unauthorized, "admin key missing"),
    ("127.0.0.1", K, "wrong", True, False, None, Unauthorized, "does not match"),
    ("10.0.0.5", K, K + "x", True, False, None, Unauthorized, "does not match"),
    ("10.0.0.5", K, "", True, False, None, Unauthorized, "does not match"),
    ("10.0.0.5", K, "\udcff\ud800", True, False, None, Unauthorized, "does not match"),  # undecodable bytes
    ("10.0.0.5", "kéy", "kéy", True, True, "key", None, "matches"),
])
def test_admin_verdict(peer: str | None, configured: str | None, presented: str | None, trust: bool,
                       allowed: bool, via: str | None, error: type | None, says: str) -> None:
    verdict = admin_verdict(peer, configured, presented, trust_loopback=trust)
    assert (verdict.allowed, verdict.via) == (allowed, via)
    text = verdict.reason if error is None else str(verdict.error)
    assert says in text
    if error is None:
        assert verdict.error is None
        verdict.raise_if_refused()
    else:
        assert isinstance(verdict.error, error)
        assert K not in str(verdict.error) and K not in verdict.reason  # the key is never echoed
        with pytest.raises(error):
            verdict.raise_if_refused()


def test_refusals_have_qdrant_status_codes() -> None:
    forbidden = admin_verdict("10.0.0.5", None, None).error
    unauthorized = admin_verdict("127.0.0.1", K, None).error
    assert forbidden is not None and (forbidden.http_status, forbidden.grpc_code) == (403, "PERMISSION_DENIED")
    assert unauthorized is not None and (unauthorized.http_status, unauthorized.grpc_code) == (401, "UNAUTHENTICATED")
    assert forbidden.to_body()["status"]["error"].startswith("Forbidden: the admin API is closed")


@pytest.mark.parametrize(("peer", "host"), [
    ("ipv4:127.0.0.1:50123", "127.0.0.1"),
    ("ipv4:10.1.2.3:1", "10.1.2.3"),
    ("ipv6:[::1]:50123", "::1"),
    ("ipv6:%5B::1%5D:50123", "::1"),  # gRPC core's URI-escaped form
    ("ipv6:%5B2001:db8::1%5D:7", "2001:db8::1"),
    ("unix:/tmp/sock", None),
    ("", None),
    (None, None),
])
def test_grpc_peer_host(peer: str | None, host: str | None) -> None:
    parsed = grpc_peer_host(peer)
    if host is None:
        assert parsed is None or not is_loopback(parsed)
    else:
        assert parsed == host


@pytest.mark.parametrize(("peername", "host"), [
    (("127.0.0.1", 5000), "127.0.0.1"), (("::1", 5000, 0, 0), "::1"), ("/tmp/sock", None), (None, None)])
def test_socket_peer_host(peername: object, host: str | None) -> None:
    assert socket_peer_host(peername) == host


@pytest.mark.parametrize(("headers", "key"), [
    ({"switchyard-admin-key": "a"}, "a"), ({"Switchyard-Admin-Key": "a"}, "a"),
    ({"authorization": "Bearer b"}, "b"), ({"Authorization": "bearer  b "}, "b"),
    ({"authorization": "Basic xyz"}, None), ({"x-forwarded-for": "127.0.0.1"}, None), ({}, None)])
def test_key_from_headers(headers: dict[str, str], key: str | None) -> None:
    assert key_from_headers(headers) == key
