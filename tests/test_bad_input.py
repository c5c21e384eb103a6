"""Bad input never gives a 5xx from the proxy: it answers what the upstream itself answers.

A bound collection in a migration (``dual_write``, merged reads) is the most decoding the proxy
ever does: stamping, the mirror's intent, inference objects, merged-read codecs. Hypothesis throws
malformed, deeply nested, oversized and merely odd bodies (and random protobuf bytes) at every
intercepted route of its logical name, and the same bytes straight at the upstream's physical
collection; the status (REST) or code (gRPC) must be the same, and never a server error made by
the proxy. Item 7 of the production-safety issue (deeply nested JSON: aiohttp's plain-text 500
where Qdrant answers 400) is the first of the explicit examples.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from switchyard.proxy.intercept.routes import GRPC_READS, GRPC_WRITES, REST_READS, REST_WRITES
from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)
from test_mirrored_writes import _admin, start_migration

ROUTES = sorted(REST_READS | REST_WRITES)
GRPC_METHODS = sorted(f"/qdrant.Points/{m}" for m in GRPC_READS | GRPC_WRITES)
KEYS = ["points", "id", "ids", "vector", "vectors", "payload", "payloads", "batch", "operations", "upsert",
        "delete", "overwrite_payload", "set_payload", "filter", "must", "key", "match", "value", "query",
        "prefetch", "using", "limit", "offset", "text", "model", "indices", "values", "with_payload",
        "with_vector", "group_by", "searches", "positive", "update_filter", "update_mode", "nearest"]


@pytest.fixture(scope="module")
def target(switchyard: RunningProxy, upstream: Any) -> Iterator[dict[str, Any]]:  # noqa: F811
    alias, source, _, _, _, direct, mid = start_migration(switchyard, upstream, "badinput_")
    _admin(switchyard, f"/migrations/{mid}/read-mode", {"mode": "merged"})
    direct.upsert(source, [{"id": i, "vector": [0.1 * (i + 1)] * 8, "payload": {"text": f"doc {i}", "doc_id": i}}
                           for i in range(5)])  # type: ignore[misc]
    proxy_url, upstream_url = urlsplit(switchyard.rest_url), urlsplit(upstream.rest_url)
    yield {"alias": alias, "source": source,
           "proxy": http.client.HTTPConnection(str(proxy_url.hostname), proxy_url.port, timeout=60),
           "direct": http.client.HTTPConnection(str(upstream_url.hostname), upstream_url.port, timeout=60),
           "proxy_grpc": grpc.insecure_channel(f"127.0.0.1:{switchyard.grpc_port}"),
           "direct_grpc": grpc.insecure_channel(f"{upstream.grpc_host}:{upstream.grpc_port}")}
    _admin(switchyard, f"/migrations/{mid}/transition", {"name": "cancel"})
    direct.close()


def _status(conn: http.client.HTTPConnection, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers={"content-type": "application/json"})
    reply = conn.getresponse()
    return reply.status, reply.read()


def _compare(t: dict[str, Any], route: tuple[str, str], body: bytes) -> None:
    method, rest = route
    got, text = _status(t["proxy"], method, f"/collections/{t['alias']}{rest}", body)
    want, direct_text = _status(t["direct"], method, f"/collections/{t['source']}{rest}", body)
    assert got < 500, f"{method} {rest}: proxy answered {got}: {text[:300]!r}"
    assert got == want, f"{method} {rest}: proxy {got} {text[:200]!r}, upstream {want} {direct_text[:200]!r}"
    if got >= 400:
        assert "error" in json.loads(text)["status"], text[:200]  # Qdrant's error shape


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                     st.text(max_size=20))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4),
                     max_leaves=25)
_BODIES = st.one_of(
    _JSON.map(lambda v: json.dumps(v).encode()),
    _JSON.map(lambda v: json.dumps(v).encode()).flatmap(lambda b: st.integers(0, max(0, len(b) - 1)).map(
        lambda n: b[:n])),                                               # truncated
    st.binary(max_size=200),                                            # not even text
    st.sampled_from([1000, 10_000, 100_000]).flatmap(lambda n: st.sampled_from([
        b"[" * n, b'{"points":[{"id":1,"payload":' + b'{"a":' * n + b"1" + b"}" * n + b"}]}",
        b'{"points":' + b"[" * n + b"]" * n + b"}", b'{"query":' + b"[" * n + b"]" * n + b"}"])),  # nested
    st.sampled_from([b'{"points":[{"id":1,"vector":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8],"payload":{"text":"'
                     + b"x" * 2_000_000 + b'"}}]}',                     # oversized text
                     b'{"points":[{"id":18446744073709551616,"vector":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]}]}',
                     b'{"points":[{"id":1,"vector":' + b"[0.5," * 1 + b"1e999]}]}"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                   HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=_BODIES)
@example(route=("PUT", "/points"), body=b'{"points":[{"id":1,"payload":' + b'{"a":' * 10_000 + b"1"
         + b"}" * 10_000 + b"}]}")
@example(route=("POST", "/points/query"), body=b'{"query":' + b"[" * 10_000 + b"]" * 10_000 + b"}")
def test_rest_bad_input_answers_as_the_upstream(target: dict[str, Any], route: tuple[str, str], body: bytes) -> None:
    _compare(target, route, body)


def _grpc_code(channel: grpc.Channel, method: str, request: bytes) -> grpc.StatusCode:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(request, timeout=30)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _field1(name: str) -> bytes:
    data = name.encode()
    return b"\x0a" + bytes([len(data)]) + data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(GRPC_METHODS), tail=st.binary(max_size=300), named=st.booleans())
def test_grpc_bad_input_answers_as_the_upstream(target: dict[str, Any], method: str, tail: bytes,
                                                named: bool) -> None:
    """Random protobuf bytes, after a real ``collection_name`` (so the proxy routes and decodes
    them) or on their own."""
    got = _grpc_code(target["proxy_grpc"], method, (_field1(target["alias"]) if named else b"") + tail)
    want = _grpc_code(target["direct_grpc"], method, (_field1(target["source"]) if named else b"") + tail)
    assert got == want, f"{method}: proxy {got}, upstream {want}"
