"""Shared fixtures: one upstream per session (the embedded server, or a real Qdrant), unique
collection names, clients in the four modes, and OpenAPI checking of every REST response.

Set ``SWITCHYARD_TEST_QDRANT_URL`` (and ``SWITCHYARD_TEST_QDRANT_GRPC`` as ``host:port``) to run
the suite against a real Qdrant; tests marked ``embedded_only`` are then skipped. Against the
embedded server, every REST response of the session is recorded by the server and validated
against Qdrant's OpenAPI spec at the end of the session (legacy endpoints exempt); a summary
line reports how many were validated.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

sys.path.insert(0, os.path.dirname(__file__))

from openapi_check import ResponseChecker  # noqa: E402

from switchyard.proxy.embedded.server import BackgroundUpstream  # noqa: E402

REAL_URL = os.environ.get("SWITCHYARD_TEST_QDRANT_URL")
REAL_GRPC = os.environ.get("SWITCHYARD_TEST_QDRANT_GRPC")
MODES = ("sync-rest", "sync-grpc", "async-rest", "async-grpc")

_CHECKER: ResponseChecker | None = None


@dataclass(frozen=True)
class Upstream:
    rest_url: str
    grpc_host: str
    grpc_port: int
    embedded: BackgroundUpstream | None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if REAL_URL and item.get_closest_marker("embedded_only"):
        pytest.skip("needs the embedded upstream itself (running against a real Qdrant)")


@pytest.fixture(scope="session")
def openapi_checker() -> Iterator[ResponseChecker]:
    """Records REST responses of the embedded server; fails the session if one breaks the spec."""
    global _CHECKER
    checker = ResponseChecker()
    _CHECKER = checker
    yield checker
    failures = checker.check_all()
    assert not failures, f"{len(failures)} REST responses do not match the OpenAPI spec:\n" + "\n".join(
        failures[:20]
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _CHECKER is not None:
        terminalreporter.write_line(
            f"openapi: {_CHECKER.validated} REST responses validated against Qdrant's spec "
            f"({_CHECKER.repeats} repeats of a validated one skipped), "
            f"{_CHECKER.exempt} exempt (legacy or non-JSON), {len(_CHECKER.failures)} failures"
        )


@pytest.fixture(scope="session")
def upstream(openapi_checker: ResponseChecker) -> Iterator[Upstream]:
    """The Qdrant every test talks to (embedded on 127.0.0.1 port 0 unless a real one is given)."""
    if REAL_URL:
        grpc = REAL_GRPC or f"{urlparse(REAL_URL).hostname}:6334"
        host, _, port = grpc.rpartition(":")
        yield Upstream(REAL_URL.rstrip("/"), host, int(port), None)
        return
    server = BackgroundUpstream(on_response=openapi_checker.record)
    server.start()
    try:
        yield Upstream(server.rest_url, server.server.host, server.grpc_port, server)
    finally:
        server.stop()


@pytest.fixture
def prefix(upstream: Upstream) -> Iterator[str]:
    """A unique collection-name prefix; collections and aliases starting with it are removed after."""
    value = f"sy_{uuid.uuid4().hex[:10]}_"
    yield value
    client = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    try:
        for alias in client.get_aliases().aliases:
            if alias.alias_name.startswith(value):
                client.update_collection_aliases(
                    [models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias.alias_name))]
                )
        for col in client.get_collections().collections:
            if col.name.startswith(value):
                client.delete_collection(col.name)
    finally:
        client.close()


ClientFactory = Callable[[str], Any]


@pytest.fixture
async def client_factory(upstream: Upstream) -> AsyncIterator[ClientFactory]:
    """``client_factory(mode)``: a qdrant-client for ``mode`` in :data:`MODES`, closed after the test."""
    made: list[Any] = []

    def make(mode: str, **kwargs: Any) -> Any:
        assert mode in MODES, mode
        flavour, proto = mode.split("-")
        cls = QdrantClient if flavour == "sync" else AsyncQdrantClient
        client = cls(
            url=upstream.rest_url,
            prefer_grpc=proto == "grpc",
            grpc_port=upstream.grpc_port,
            check_compatibility=True,
            **kwargs,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        closing = client.close()
        if closing is not None:
            await closing
