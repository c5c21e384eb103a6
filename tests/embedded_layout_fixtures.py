"""Servers and clients for the layout tests (named vectors, ``has_vector``, facets, config
updates, payload schema, snapshots): each test runs on every engine the embedded upstream has.

``target`` is parametrized: ``shared`` is the session's upstream (the embedded server on its
default engine, or a real Qdrant when ``SWITCHYARD_TEST_QDRANT_URL`` is set, OpenAPI-checked by
the session), ``edge`` an embedded server on the Edge engine for the module, its REST responses
checked against the spec when the module ends. ``clients(target)`` gives the official client over
REST and over gRPC.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from qdrant_client import QdrantClient

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


@pytest.fixture(scope="module")
def edge_server() -> Iterator[BackgroundUpstream]:
    """An embedded server on the Edge engine for the module, OpenAPI-checked at the end."""
    if REAL_URL:
        pytest.skip("the edge engine is the embedded server's own (running against a real Qdrant)")
    if not edge_available():
        pytest.skip("qdrant-edge-py is not installed here")
    checker = ResponseChecker()
    server = BackgroundUpstream(engine="edge", on_response=checker.record)
    server.start()
    try:
        yield server
    finally:
        server.stop()
    failures = checker.check_all()
    assert not failures, "responses break the OpenAPI spec:\n" + "\n".join(failures[:20])


@pytest.fixture(params=["shared", "edge"])
def target(request: pytest.FixtureRequest, upstream: Any) -> Target:
    if request.param == "shared":
        return Target("shared", upstream.rest_url, upstream.grpc_port, upstream.embedded)
    server: BackgroundUpstream = request.getfixturevalue("edge_server")
    return Target("edge", server.rest_url, server.grpc_port, server)


@pytest.fixture
def clients(target: Target) -> Iterator[tuple[QdrantClient, QdrantClient]]:
    """(REST client, gRPC client) on ``target``, closed after the test."""
    rest, grpc = target.client(False), target.client(True)
    try:
        yield rest, grpc
    finally:
        rest.close()
        grpc.close()
