"""Strict mode's request-size, timeout and rate limits through the official client, REST and
gRPC: ``max_timeout``, ``filter_max_conditions``, ``condition_max_size``, ``read_rate_limit``
and ``write_rate_limit`` refuse in Qdrant's words and status codes.

Runs against the session's upstream: the embedded one on either engine, or a real Qdrant
(``SWITCHYARD_TEST_QDRANT_URL``).

The rate-limit tests need no clock: a bucket of ``n`` per minute starts full and refills
``n / 60`` tokens a second, so a limit of 2 reads lets two queries through and refuses the
third unless some 30 s pass between them; the refusal asserts only what holds however long
the calls took.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import UnexpectedResponse

VECTOR = [1.0, 0.0, 0.0, 0.0]
FC = models.FieldCondition(key="n", range=models.Range(gte=0))


@pytest.fixture(params=["rest", "grpc"])
async def client(request: Any, upstream: Any) -> AsyncIterator[AsyncQdrantClient]:
    c = AsyncQdrantClient(url=upstream.rest_url, grpc_port=upstream.grpc_port,
                          prefer_grpc=request.param == "grpc", check_compatibility=False)
    try:
        yield c
    finally:
        await c.close()


async def _collection(client: AsyncQdrantClient, name: str, **strict: Any) -> None:
    await client.create_collection(name, models.VectorParams(size=4, distance=models.Distance.DOT))
    await client.upsert(name, [models.PointStruct(id=i, vector=[1.0, i, 0.0, 0.0],
                                                  payload={"n": i}) for i in range(1, 7)])
    await client.update_collection(name, strict_mode_config=models.StrictModeConfig(
        enabled=True, **strict))


def _grpc(client: AsyncQdrantClient) -> bool:
    return bool(getattr(client._client, "_prefer_grpc", False))  # which transport this run uses


async def refused(client: AsyncQdrantClient, call: Any, status: int, words: str) -> None:
    """``call()`` fails with Qdrant's ``status`` (or its gRPC code) and ``words`` in the error."""
    codes = {400: grpc.StatusCode.INVALID_ARGUMENT, 429: grpc.StatusCode.RESOURCE_EXHAUSTED}
    if _grpc(client):
        with pytest.raises(grpc.aio.AioRpcError) as grpc_caught:
            await call()
        assert grpc_caught.value.code() == codes[status]
        assert words in (grpc_caught.value.details() or "")
        return
    with pytest.raises(UnexpectedResponse) as caught:
        await call()
    assert caught.value.status_code == status
    assert words in json.loads(caught.value.content)["status"]["error"]


async def retry_later(client: AsyncQdrantClient, call: Any, words: str) -> None:
    """``call()`` is rate-limited with a time to retry after: the official client raises its
    ``ResourceExhaustedResponse`` from Qdrant's 429 ``Retry-After`` header (REST) or
    ``RESOURCE_EXHAUSTED`` with ``retry-after`` metadata (gRPC)."""
    with pytest.raises(ResourceExhaustedResponse) as caught:
        await call()
    assert words in caught.value.message
    assert 0 < caught.value.retry_after_s <= 60
    if _grpc(client):
        cause = caught.value.__cause__
        assert isinstance(cause, grpc.aio.AioRpcError)
        assert cause.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_max_timeout(client: AsyncQdrantClient, prefix: str) -> None:
    name = f"{prefix}strict_timeout"
    await _collection(client, name, max_timeout=5, max_query_limit=3)
    assert len((await client.query_points(name, VECTOR, limit=2, timeout=5)).points) == 2
    await client.query_points(name, VECTOR, limit=2)  # no timeout asked: nothing to check
    await refused(client, lambda: client.query_points(name, VECTOR, limit=2, timeout=6), 400,
                  'Limit exceeded 6 > 5 for "timeout"')
    await refused(client, lambda: client.scroll(name, limit=2, timeout=6), 400,
                  'Limit exceeded 6 > 5 for "timeout"')
    # the request's own limits are checked before its timeout, as Qdrant's check_strict_mode does
    await refused(client, lambda: client.query_points(name, VECTOR, limit=4, timeout=6), 400,
                  'Limit exceeded 4 > 3 for "limit"')


async def test_filter_limits(client: AsyncQdrantClient, prefix: str) -> None:
    name = f"{prefix}strict_filters"
    await _collection(client, name, filter_max_conditions=2, condition_max_size=3)
    two = models.Filter(must=[FC, FC])
    found, _ = await client.scroll(name, scroll_filter=two, limit=10)
    assert len(found) == 6
    nested = models.Filter(must=[FC, models.Filter(should=[FC, FC])])
    await refused(client, lambda: client.scroll(name, scroll_filter=nested, limit=10), 400,
                  "Filter condition limit reached (3 > 2)")
    wide = models.Filter(must=[models.FieldCondition(key="n", match=models.MatchAny(
        any=[1, 2, 3, 4]))])
    await refused(client, lambda: client.query_points(name, VECTOR, query_filter=wide), 400,
                  "Condition size limit reached (4 > 3)")
    await refused(client, lambda: client.delete(name, models.FilterSelector(filter=nested)), 400,
                  "Filter condition limit reached (3 > 2)")
    assert (await client.count(name, exact=True)).count == 6  # the refused delete did nothing


async def test_read_rate_limit(client: AsyncQdrantClient, prefix: str) -> None:
    name = f"{prefix}strict_reads"
    await _collection(client, name, read_rate_limit=2)
    await client.query_points(name, VECTOR, limit=1)
    await client.query_points(name, VECTOR, limit=1)
    await retry_later(client, lambda: client.query_points(name, VECTOR, limit=1),
                      "Rate limiting exceeded: Read rate limit exceeded: Operation requires 1 tokens")
    await client.get_collection(name)  # collection metadata is not rate-limited
    await client.upsert(name, [models.PointStruct(id=9, vector=VECTOR)])  # writes: own bucket
    # a new config makes a new, full bucket
    await client.update_collection(name, strict_mode_config=models.StrictModeConfig(
        read_rate_limit=3))
    await client.query_points(name, VECTOR, limit=1)


async def test_write_rate_limit(client: AsyncQdrantClient, prefix: str) -> None:
    name = f"{prefix}strict_writes"
    await _collection(client, name, write_rate_limit=5)

    def points(ids: range) -> list[models.PointStruct]:
        return [models.PointStruct(id=i, vector=VECTOR) for i in ids]

    await refused(client, lambda: client.upsert(name, points(range(10, 16))), 429,
                  "Write rate limit exceeded, request larger than than rate limiter capacity")
    await client.upsert(name, points(range(10, 13)))  # 3 of 5 tokens
    await retry_later(client, lambda: client.upsert(name, points(range(20, 23))),
                      "Write rate limit exceeded: Operation requires 3 tokens but only")
    await client.scroll(name, limit=1)  # reads: own bucket


async def test_max_points_count(client: AsyncQdrantClient, prefix: str) -> None:
    """Refused once the collection holds the limit. Qdrant checks a cached estimate of the
    count, so a real server may let a few more writes through first: the loop allows that."""
    name = f"{prefix}strict_points"
    await _collection(client, name, max_points_count=7)  # 6 points already
    for i in range(32):
        try:
            await client.upsert(name, [models.PointStruct(id=100 + i, vector=VECTOR)])
        except (UnexpectedResponse, grpc.aio.AioRpcError):
            break
    else:
        pytest.fail("upserts past max_points_count were never refused")
    await refused(client, lambda: client.upsert(name, [models.PointStruct(id=99, vector=VECTOR)]),
                  400, "Max points count limit of 7 reached!")
    assert (await client.count(name, exact=True)).count >= 7
    await client.delete(name, models.PointIdsList(points=[1, 2, 3]))  # deletes still go through


async def test_multivector_and_sparse_limits(client: AsyncQdrantClient, prefix: str) -> None:
    name = f"{prefix}strict_vectors"
    await client.create_collection(
        name, {"colbert": models.VectorParams(
            size=2, distance=models.Distance.DOT,
            multivector_config=models.MultiVectorConfig(
                comparator=models.MultiVectorComparator.MAX_SIM))},
        sparse_vectors_config={"text": models.SparseVectorParams()},
        strict_mode_config=models.StrictModeConfig(
            enabled=True, multivector_config={"colbert": models.StrictModeMultivector(max_vectors=2)},
            sparse_config={"text": models.StrictModeSparse(max_length=2)}))
    two = [[1.0, 0.0], [0.0, 1.0]]
    await client.upsert(name, [models.PointStruct(id=1, vector={"colbert": two})])
    await refused(client, lambda: client.upsert(name, [models.PointStruct(
        id=2, vector={"colbert": [*two, [1.0, 1.0]]})]), 400,
        "Multivector 'colbert' has a limit of 2 vectors, but 3 were provided!")
    await client.upsert(name, [models.PointStruct(id=3, vector={
        "colbert": two, "text": models.SparseVector(indices=[1, 2], values=[0.5, 0.5])})])
    await refused(client, lambda: client.update_vectors(name, [models.PointVectors(
        id=3, vector={"text": models.SparseVector(indices=[1, 2, 3], values=[0.5, 0.5, 0.5])})]),
        400, "Sparse vector 'text' has a limit of 2 indices, but 3 were provided!")
    assert (await client.count(name, exact=True)).count == 2


async def _upsert_until_refused(client: AsyncQdrantClient, name: str, payload: bool) -> int:
    """Upserts one point at a time until one is refused; how many went through. Qdrant checks
    cached size estimates (refreshed every 32 checks), so a real server may take a few more."""
    for i in range(64):
        try:
            await client.upsert(name, [models.PointStruct(
                id=100 + i, vector=VECTOR, payload={"n": i} if payload else None)])
        except (UnexpectedResponse, grpc.aio.AioRpcError):
            return i
    pytest.fail("upserts past the storage size limit were never refused")


async def test_max_collection_vector_size(client: AsyncQdrantClient, prefix: str, upstream: Any) -> None:
    """Refused once the collection's vectors take the limit: 4 float32 of 4 bytes a point, 6
    points (96 bytes) before the limit of 160 is set."""
    name = f"{prefix}strict_vector_bytes"
    await _collection(client, name, max_collection_vector_size_bytes=160)
    taken = await _upsert_until_refused(client, name, payload=False)
    if upstream.embedded is not None:
        assert taken == 4  # the 4th takes the vectors to 160 bytes: the 5th is refused
    words = "Max vector storage size limit of 0.00015258789MB reached!"
    await refused(client, lambda: client.upsert(name, [models.PointStruct(id=99, vector=VECTOR)]),
                  400, words)
    await refused(client, lambda: client.update_vectors(name, [models.PointVectors(
        id=1, vector=VECTOR)]), 400, words)
    await client.set_payload(name, {"m": 1}, points=[1])  # a payload write: not this limit
    await client.delete(name, models.PointIdsList(points=[1, 2, 3]))  # deletes still go through


async def test_max_collection_payload_size(client: AsyncQdrantClient, prefix: str, upstream: Any) -> None:
    """Refused once the payloads take the limit. The embedded upstream counts compact JSON
    (6 points of ``{"n":i}``, 7 bytes each, 42 bytes); Qdrant its payload storage's size
    on disk, which may be past a small limit from the start."""
    name = f"{prefix}strict_payload_bytes"
    await _collection(client, name, max_collection_payload_size_bytes=100)
    taken = await _upsert_until_refused(client, name, payload=True)
    if upstream.embedded is not None:
        assert taken == 9  # 42 + 9 * 7 bytes: past 100 only after the 9th
    words = "Max payload storage size limit of 0.00009536743MB reached!"
    await refused(client, lambda: client.upsert(name, [models.PointStruct(id=99, vector=VECTOR)]),
                  400, words)
    await refused(client, lambda: client.set_payload(name, {"m": 1}, points=[1]), 400, words)
    await client.delete_payload(name, ["n"], points=[1])  # deleting payload still goes through
