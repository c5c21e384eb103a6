"""The workload gives the same results through the embedded upstream, in all four client modes,
as on qdrant-client's in-process local mode (``QdrantClient(":memory:")``).

The reference record is computed once per module from the local mode; each mode's record must
equal it exactly, floats within a small tolerance (gRPC carries float32).
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from qdrant_client import QdrantClient

from conftest import MODES, ClientFactory
from workload import assert_congruent, run_workload


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    client = QdrantClient(":memory:")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "payload indexes have no effect"
            return asyncio.run(run_workload(client, "ref_"))
    finally:
        client.close()


@pytest.mark.parametrize("mode", MODES)
async def test_workload_matches_local_mode(
    mode: str, client_factory: ClientFactory, prefix: str, reference: dict[str, Any]
) -> None:
    client = client_factory(mode)
    record = await run_workload(client, prefix)
    assert_congruent(record, reference)


def test_reference_record_is_substantial(reference: dict[str, Any]) -> None:
    """Guards the comparison against an empty or degenerate workload."""
    assert len(reference["query"]["points"]) == 5
    assert sum(len(page) for page in reference["scroll_all"]) == reference["count_after_delete_by_filter"]["count"]
    assert len(reference["scroll_all"]) > 2
    assert reference["fusion"]["points"] and reference["groups"]["groups"]
    assert reference["conditional"] and reference["exists_after_delete"] is False
