"""Congruence: the shared workload gives identical results through the proxy and directly.

Ids, payloads, vectors and scores, in all four client modes (sync/async x REST/gRPC), with the
real interception path active (the workload's collections are not bound, so every call is
forwarded; bound collections are covered by ``test_proxy_metadata``).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient

from conftest import MODES, ClientFactory
from proxy_fixtures import RunningProxy, client_kwargs, switchyard  # noqa: F401  (fixture)
from workload import assert_congruent, run_workload


@pytest.mark.parametrize("mode", MODES)
async def test_workload_through_proxy_matches_direct(
    mode: str, client_factory: ClientFactory, switchyard: RunningProxy, prefix: str
) -> None:
    direct = client_factory(mode)
    want = await run_workload(direct, prefix + "direct_")
    cls = QdrantClient if mode.startswith("sync") else AsyncQdrantClient
    through = cls(**client_kwargs(switchyard, mode), check_compatibility=True)
    try:
        got = await run_workload(through, prefix + "proxied_")
    finally:
        closing = through.close()
        if closing is not None:
            await closing
    assert_congruent(got, want, rel=1e-6)
    assert want["query"]["points"], "the workload must return results to compare"
