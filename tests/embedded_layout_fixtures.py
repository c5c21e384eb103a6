"""Servers and clients for the layout tests (named vectors, ``has_vector``, facets, config
updates, payload schema, snapshots): each test runs on every engine the embedded upstream has.

``target`` is parametrized: ``local`` and ``edge`` are embedded servers on those engines for the
module (named explicitly, whatever the default engine is), their REST responses checked against
the spec when the module ends; with ``SWITCHYARD_TEST_QDRANT_URL`` set there is one target,
``real``, the session's Qdrant. ``clients(target)`` gives the official client over
REST and over gRPC.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

sys.path.insert(0, os.path.dirname(__file__))

from openapi_check import ResponseChecker  # noqa: E402

from switchyard.proxy.embedded.engines import edge_available  # noqa: E402
from switchyard.proxy.embedded.server import BackgroundUpstream  # noqa: E402

REAL_URL = os.environ.get("SWITCHYARD_TEST_QDRANT_URL")


@dataclass(frozen=True)
class Target:
    """One server under test: where it listens and, when embedded, the server itself."""

    name: str
    rest_url: str
    grpc_port: int
    embedded: BackgroundUpstream | None

    def client(self, grpc: bool) -> QdrantClient:
        return QdrantClient(url=self.rest_url, prefer_grpc=grpc, grpc_port=self.grpc_port,
                            check_compatibility=False, timeout=60)


def _embedded(engine: str) -> Iterator[BackgroundUpstream]:
    """An embedded server on ``engine`` for the module, OpenAPI-checked when it ends."""
    if engine == "edge" and not edge_available():
        pytest.skip("qdrant-edge-py is not installed here")
    checker = ResponseChecker()
    server = BackgroundUpstream(engine=engine, on_response=checker.record)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    failures = checker.check_all()
    assert not failures, "responses break the OpenAPI spec:\n" + "\n".join(failures[:20])


@pytest.fixture(scope="module")
def local_server() -> Iterator[BackgroundUpstream]:
    yield from _embedded("local")


@pytest.fixture(scope="module")
def edge_server() -> Iterator[BackgroundUpstream]:
    yield from _embedded("edge")


@pytest.fixture(params=["real"] if REAL_URL else ["local", "edge"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each engine of the embedded upstream explicitly (whatever the default engine is), or
    the real Qdrant the session was pointed at."""
    if request.param == "real":
        upstream = request.getfixturevalue("upstream")
        return Target("real", upstream.rest_url, upstream.grpc_port, None)
    server: BackgroundUpstream = request.getfixturevalue(f"{request.param}_server")
    return Target(request.param, server.rest_url, server.grpc_port, server)


@pytest.fixture
def prefix(target: Target) -> Iterator[str]:
    """A unique collection-name prefix; on a real Qdrant its collections are removed after
    (the embedded servers are discarded with their module)."""
    value = f"sy_{uuid.uuid4().hex[:10]}_"
    yield value
    if target.embedded is None:
        client = target.client(False)
        try:
            for alias in client.get_aliases().aliases:
                if alias.alias_name.startswith(value):
                    client.update_collection_aliases([models.DeleteAliasOperation(
                        delete_alias=models.DeleteAlias(alias_name=alias.alias_name))])
            for col in client.get_collections().collections:
                if col.name.startswith(value):
                    client.delete_collection(col.name)
        finally:
            client.close()


@pytest.fixture
def clients(target: Target) -> Iterator[tuple[QdrantClient, QdrantClient]]:
    """(REST client, gRPC client) on ``target``, closed after the test."""
    rest, grpc = target.client(False), target.client(True)
    try:
        yield rest, grpc
    finally:
        rest.close()
        grpc.close()
