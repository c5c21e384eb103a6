"""Issue 11 item 10: ``_switchyard`` is the proxy's own.

Pure tables for the rules (``switchyard.proxy.intercept.reserved``) and the reply filters
(``switchyard.proxy.intercept.listing``), then the real thing: the session proxy in front of the embedded
upstream, the official client over REST and gRPC, each compared with the upstream direct.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import grpc
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.grpc import collections_pb2
from qdrant_client.http.exceptions import UnexpectedResponse

from switchyard.proxy.intercept import listing, reserved
from switchyard.proxy.intercept.reserved import Listing
from proxy_fixtures import RunningProxy, switchyard  # noqa: F401  (fixture)

SY = "_switchyard"
ALIASES = {"ops": SY, "docs": "docs_v1"}


@pytest.mark.parametrize(("method", "path", "body", "refused"), [
    ("DELETE", "/collections/_switchyard", b"", True),
    ("DELETE", "/collections/%5Fswitchyard", b"", True),
    ("PUT", "/collections/_switchyard", b"{}", True),
    ("PATCH", "/collections/_switchyard", b"{}", True),
    ("PUT", "/collections/_switchyard/points", b"{}", True),
    ("POST", "/collections/_switchyard/points/scroll", b"{}", True),     # reads too
    ("GET", "/collections/_switchyard", b"", True),
    ("PUT", "/collections/_switchyard/index", b"{}", True),
    ("POST", "/collections/_switchyard/snapshots", b"", True),
    ("POST", "/collections/ops/points/delete", b"{}", True),             # through its alias
    ("PUT", "/collections/docs/points", b"{}", False),
    ("DELETE", "/collections/_switchyard_backup", b"", False),          # another name
    ("POST", "/collections/aliases",
     b'{"actions":[{"create_alias":{"collection_name":"_switchyard","alias_name":"x"}}]}', True),
    ("POST", "/collections/aliases", b'{"actions":[{"delete_alias":{"alias_name":"ops"}}]}', True),
    ("POST", "/collections/aliases",
     b'{"actions":[{"rename_alias":{"old_alias_name":"ops","new_alias_name":"y"}}]}', True),
    ("POST", "/collections/aliases", b'{"actions":[{"delete_alias":{"alias_name":"docs"}}]}', False),
    ("POST", "/collections/aliases", b"not json", False),                # the upstream answers it
])
def test_rest_refusal_table(method: str, path: str, body: bytes, refused: bool) -> None:
    assert reserved.rest_wants(method, path, ALIASES) or not refused
    reason = reserved.rest_refusal(method, path, body, ALIASES)
    assert (reason is not None) is refused
    if refused:
        assert reason is not None and SY in reason and "admin API" in reason


def _change(**op: Any) -> bytes:
    return collections_pb2.ChangeAliases(actions=[collections_pb2.AliasOperations(**op)]).SerializeToString()


@pytest.mark.parametrize(("method", "request_bytes", "refused"), [
    ("/qdrant.Collections/Delete", collections_pb2.DeleteCollection(collection_name=SY).SerializeToString(), True),
    ("/qdrant.Collections/Delete", collections_pb2.DeleteCollection(collection_name="docs").SerializeToString(), False),
    ("/qdrant.Collections/Get", collections_pb2.GetCollectionInfoRequest(collection_name="ops").SerializeToString(), True),
    ("/qdrant.Points/Upsert", b"\x0a\x0b_switchyard", True),
    ("/qdrant.Points/Scroll", b"\x0a\x0b_switchyard", True),
    ("/qdrant.Snapshots/Create", b"\x0a\x0b_switchyard", True),
    ("/qdrant.Collections/List", b"", False),
    ("/qdrant.Collections/UpdateAliases",
     _change(create_alias=collections_pb2.CreateAlias(collection_name=SY, alias_name="x")), True),
    ("/qdrant.Collections/UpdateAliases", _change(delete_alias=collections_pb2.DeleteAlias(alias_name="ops")), True),
    ("/qdrant.Collections/UpdateAliases", _change(delete_alias=collections_pb2.DeleteAlias(alias_name="docs")), False),
    ("/qdrant.Collections/UpdateAliases", b"\xff\xff", False),
    # a second collection_name wins in protobuf: naming another collection first changes nothing
    ("/qdrant.Collections/Delete", b"\x0a\x04docs" + collections_pb2.DeleteCollection(
        collection_name=SY).SerializeToString(), True),
    ("/qdrant.Points/Delete", b"\x0a\x04docs\x0a\x0b_switchyard", True),
])
def test_grpc_refusal_table(method: str, request_bytes: bytes, refused: bool) -> None:
    assert reserved.grpc_wants(method)
    assert (reserved.grpc_refusal(method, request_bytes, ALIASES) is not None) is refused


@pytest.mark.parametrize("headers, key, peer, trust, admitted", [
    ((("api-key", "x"),), None, "127.0.0.1", True, False),            # no header: an application
    ((("switchyard-admin-key", "-"),), None, "127.0.0.1", True, True),  # no key: loopback opts in
    ((("switchyard-admin-key", "-"),), None, "::1", True, True),
    ((("switchyard-admin-key", "-"),), None, "10.1.2.3", True, False),  # ... a remote peer cannot
    ((("switchyard-admin-key", "-"),), None, None, True, False),        # nor an unknown one
    ((("switchyard-admin-key", "-"),), None, "127.0.0.1", False, False),  # loopback trust off
    ((("switchyard-admin-key", "k"),), "k", "10.1.2.3", True, True),    # with a key: the key decides
    ((("switchyard-admin-key", "-"),), "k", "127.0.0.1", True, False),
])
def test_admitted_by_the_admin_rule(headers: Any, key: str | None, peer: str | None, trust: bool,
                                    admitted: bool) -> None:
    assert reserved.admitted(headers, key, peer, trust_loopback=trust) is admitted
    assert reserved.without_credential((("switchyard-admin-key", "k"), ("a", "b"))) == (("a", "b"),)


def test_listing_filters() -> None:
    body = json.dumps({"result": {"collections": [{"name": SY}, {"name": "docs"}]}, "status": "ok",
                       "time": 0.1}).encode()
    assert json.loads(listing.rest_body(Listing.COLLECTIONS, body, True))["result"]["collections"] == [
        {"name": "docs"}]
    aliases = json.dumps({"result": {"aliases": [{"alias_name": "ops", "collection_name": SY},
                                                 {"alias_name": "d", "collection_name": "docs"}]}}).encode()
    assert [a["alias_name"] for a in json.loads(listing.rest_body(Listing.ALIASES, aliases, True))[
        "result"]["aliases"]] == ["d"]
    tele = json.dumps({"result": {"collections": {"number_of_collections": 3, "collections": [
        {"id": SY}, {"id": "docs"}]}}}).encode()
    cols = json.loads(listing.rest_body(Listing.TELEMETRY, tele, True))["result"]["collections"]
    assert cols == {"number_of_collections": 2, "collections": [{"id": "docs"}]}
    metrics = (b"# HELP collections_total number of collections\n# TYPE collections_total gauge\n"
               b"collections_total 3\ncollection_points{collection=\"_switchyard\"} 7\n"
               b"collection_points{collection=\"docs\"} 5\n")
    assert listing.metrics_text(metrics, True) == (
        b"# HELP collections_total number of collections\n# TYPE collections_total gauge\n"
        b"collections_total 2\ncollection_points{collection=\"docs\"} 5\n")
    assert listing.metrics_text(b"collections_total 3\n", False) == b"collections_total 3\n"
    assert listing.rest_body(Listing.COLLECTIONS, b"garbage", True) == b"garbage"
    grpc_list = collections_pb2.ListCollectionsResponse(collections=[
        collections_pb2.CollectionDescription(name=SY), collections_pb2.CollectionDescription(name="d")])
    out = collections_pb2.ListCollectionsResponse.FromString(
        listing.grpc_response(Listing.COLLECTIONS, grpc_list.SerializeToString()))
    assert [c.name for c in out.collections] == ["d"]


# ---------------------------------------------------------------- through the real proxy

def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def _metric(text: bytes, name: str) -> float:
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


@pytest.mark.embedded_only  # compares exact counts with the upstream, which a shared Qdrant may change
def test_listings_hide_it(switchyard: RunningProxy, upstream: Any) -> None:
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    rest = QdrantClient(url=switchyard.rest_url, check_compatibility=False)
    over_grpc = QdrantClient(url=switchyard.rest_url, prefer_grpc=True, grpc_port=switchyard.grpc_port,
                             check_compatibility=False)
    try:
        names = {c.name for c in direct.get_collections().collections}
        assert SY in names
        assert {c.name for c in rest.get_collections().collections} == names - {SY}
        assert {c.name for c in over_grpc.get_collections().collections} == names - {SY}
        assert _metric(_get(switchyard.rest_url + "/metrics"), "collections_total") == \
            _metric(_get(upstream.rest_url + "/metrics"), "collections_total") - 1
        via = json.loads(_get(switchyard.rest_url + "/telemetry"))["result"]["collections"]
        plain = json.loads(_get(upstream.rest_url + "/telemetry"))["result"]["collections"]
        assert via["number_of_collections"] == plain["number_of_collections"] - 1
    finally:
        for c in (direct, rest, over_grpc):
            c.close()


def test_writes_and_deletes_refused_both_protocols(switchyard: RunningProxy, upstream: Any,
                                                   prefix: str) -> None:
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    rest = QdrantClient(url=switchyard.rest_url, check_compatibility=False)
    over_grpc = QdrantClient(url=switchyard.rest_url, prefer_grpc=True, grpc_port=switchyard.grpc_port,
                             check_compatibility=False)
    try:
        with pytest.raises(UnexpectedResponse) as info:
            rest.delete_collection(SY)
        assert info.value.status_code == 403
        assert SY in json.loads(info.value.content)["status"]["error"]
        with pytest.raises(grpc.RpcError) as rpc:
            over_grpc.delete_collection(SY)
        assert rpc.value.code() == grpc.StatusCode.PERMISSION_DENIED and SY in (rpc.value.details() or "")
        twice = grpc.insecure_channel(f"127.0.0.1:{switchyard.grpc_port}")  # first name harmless, last _switchyard
        with pytest.raises(grpc.RpcError) as rpc:
            twice.unary_unary("/qdrant.Collections/Delete", request_serializer=None, response_deserializer=None)(
                b"\x0a\x04docs" + collections_pb2.DeleteCollection(collection_name=SY).SerializeToString(), timeout=30)
        assert rpc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        twice.close()
        for client in (rest, over_grpc):
            with pytest.raises((UnexpectedResponse, grpc.RpcError)):
                client.upsert(SY, [models.PointStruct(id=1, vector={}, payload={"kind": "x"})])
            with pytest.raises((UnexpectedResponse, grpc.RpcError)):
                client.update_collection_aliases([models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=SY, alias_name=f"{prefix}sy"))])
        assert direct.collection_exists(SY)
        assert f"{prefix}sy" not in {a.alias_name for a in direct.get_aliases().aliases}

        # an alias of it made behind the proxy's back: hidden from listings, refused as a name
        alias = f"{prefix}ops"
        direct.update_collection_aliases([models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=SY, alias_name=alias))])
        deadline = time.monotonic() + 10
        while switchyard.interceptor.cache.snapshot.aliases.get(alias) != SY:
            assert time.monotonic() < deadline, "proxy never saw the alias"
            time.sleep(0.05)
        assert alias not in {a.alias_name for a in rest.get_aliases().aliases}
        assert alias not in {a.alias_name for a in over_grpc.get_aliases().aliases}
        with pytest.raises(UnexpectedResponse) as info:
            rest.scroll(alias)
        assert info.value.status_code == 403
        # Switchyard's own tools (header switchyard-admin-key) still get in
        tool = QdrantClient(url=switchyard.rest_url, check_compatibility=False,
                            metadata={"switchyard-admin-key": "-"})
        try:
            assert tool.collection_exists(SY)
            assert SY in {c.name for c in tool.get_collections().collections}
        finally:
            tool.close()
    finally:
        for c in (direct, rest, over_grpc):
            c.close()
