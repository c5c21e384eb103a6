"""Issue 11 item 2 on real processes: bounded inference text, no work for refused callers, and
healthz answering while the largest allowed request is embedded.

A key-protected embedded upstream, a proxy subprocess in front of it (``keyed_proxy``), a
collection bound to a hashing model, and the official qdrant-client. "The proxy embedded
nothing" is read from the proxy's own counter ``switchyard_embedded_texts_total``, which every
embedding goes through (``EmbedderPool.embed``); each test also shows the counter moving for an
allowed caller, so an unchanged counter means something. RSS is printed as a report only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import orjson
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from keyed_proxy import KeyedSetup, random_text, raw_rest, start_keyed

pytestmark = [pytest.mark.embedded_only,  # needs an upstream started with an API key
              pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")]

TEN_MB = 10 * 1024 * 1024
EMBEDDED = "switchyard_embedded_texts_total"


@pytest.fixture(scope="module")
def keyed() -> Iterator[KeyedSetup]:
    setup = start_keyed()
    try:
        yield setup
    finally:
        setup.stop()


def _embedded(setup: KeyedSetup) -> float:
    return setup.metric(EMBEDDED, model=setup.spec.id)


def _query(setup: KeyedSetup, key: str | None, text: str, grpc_: bool = False) -> Any:
    client = setup.client(key, grpc=grpc_)
    try:
        return client.query_points(setup.collection, query=models.Document(text=text, model=setup.spec.id), limit=3)
    finally:
        client.close()


def test_ten_megabyte_inference_text_is_refused_before_embedding(keyed: KeyedSetup) -> None:
    _query(keyed, keyed.key, "a small query")  # positive control: an allowed query embeds
    before, rss_before = _embedded(keyed), keyed.rss_kib()
    started = time.perf_counter()
    with pytest.raises(UnexpectedResponse) as err:
        _query(keyed, keyed.key, "word " * (TEN_MB // 5))
    elapsed = time.perf_counter() - started
    assert err.value.status_code == 400
    message = orjson.loads(err.value.content)["status"]["error"]
    assert "max_inference_text_chars" in message and "8192" in message
    assert _embedded(keyed) == before  # never embedded, never tokenized
    rss_after = keyed.rss_kib()
    print(f"\n10 MB inference query: 400 in {elapsed:.3f} s; proxy RSS {rss_before / 1024:.0f} -> "
          f"{rss_after / 1024:.0f} MiB")
    _query(keyed, keyed.key, "another small query")
    assert _embedded(keyed) == before + 1


def test_oversized_inference_over_grpc_is_invalid_argument(keyed: KeyedSetup) -> None:
    before = _embedded(keyed)
    with pytest.raises(grpc.RpcError) as err:
        _query(keyed, keyed.key, "word " * 200_000, grpc_=True)  # 1 MB: under gRPC's 4 MiB message cap
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_inference_text_chars" in (err.value.details() or "")
    assert _embedded(keyed) == before


def test_request_total_is_bounded(keyed: KeyedSetup) -> None:
    """130 objects of 8,100 characters: each under the per-object bound, together over 1 MiB."""
    before = _embedded(keyed)
    points = [{"id": i, "vector": {"text": f"{i} " + "w" * 8090, "model": keyed.spec.id}} for i in range(130)]
    status, body = raw_rest(keyed, "PUT", f"/collections/{keyed.collection}/points?wait=true",
                            orjson.dumps({"points": points}), keyed.key)
    assert status == 400, body
    assert "max_inference_request_chars" in orjson.loads(body)["status"]["error"]
    assert _embedded(keyed) == before
    count = keyed.client(keyed.key, direct=True)
    try:
        assert count.count(keyed.collection, exact=True).count == 0  # nothing forwarded either
    finally:
        count.close()


@pytest.mark.parametrize("grpc_", [False, True], ids=["rest", "grpc"])
def test_keyless_caller_is_answered_as_qdrant_and_costs_no_embedding(keyed: KeyedSetup, grpc_: bool) -> None:
    text = "word " * 1000
    before = _embedded(keyed)
    refusals = []
    for direct in (True, False):
        client = keyed.client(None, grpc=grpc_, direct=direct)
        try:
            with pytest.raises((UnexpectedResponse, grpc.RpcError)) as err:
                client.query_points(keyed.collection, query=models.Document(text=text, model=keyed.spec.id), limit=3)
            with pytest.raises((UnexpectedResponse, grpc.RpcError)) as werr:
                client.upsert(keyed.collection, [models.PointStruct(
                    id=1, vector=models.Document(text=text, model=keyed.spec.id))])
        finally:
            client.close()
        refusals.append([_refusal(err.value), _refusal(werr.value)])
    assert refusals[0] == refusals[1]  # status and message as direct
    assert refusals[0][0][0] in (401, "UNAUTHENTICATED")
    assert _embedded(keyed) == before


@pytest.mark.parametrize("grpc_", [False, True], ids=["rest", "grpc"])
def test_read_only_key_may_query_but_its_writes_cost_nothing(keyed: KeyedSetup, grpc_: bool) -> None:
    text = "read only " * 100
    before = _embedded(keyed)
    _query(keyed, keyed.read_only_key, text, grpc_=grpc_)  # reads are allowed: embedded once
    assert _embedded(keyed) == before + 1
    refusals = []
    for direct in (True, False):
        client = keyed.client(keyed.read_only_key, grpc=grpc_, direct=direct)
        try:
            with pytest.raises((UnexpectedResponse, grpc.RpcError)) as err:
                client.upsert(keyed.collection, [models.PointStruct(
                    id=7, vector=models.Document(text=text, model=keyed.spec.id))])
        finally:
            client.close()
        refusals.append(_refusal(err.value))
    assert refusals[0] == refusals[1] and refusals[0][0] in (403, "PERMISSION_DENIED")
    assert _embedded(keyed) == before + 1


def test_healthz_answers_while_the_largest_allowed_request_is_embedded(keyed: KeyedSetup) -> None:
    """128 inference objects of 8,192 characters: exactly the 1 MiB request bound.

    ``switchyard_embeddings_in_flight`` is read from the proxy before and after each healthz
    call: when both readings see the (single) embedding call running, healthz was answered
    while it ran. An embedding on the event loop thread could never be seen running by an HTTP
    answer of that same loop.
    """
    points = [{"id": i, "vector": {"text": random_text(8192, seed=i), "model": keyed.spec.id}}
              for i in range(128)]
    body = orjson.dumps({"points": points})
    before = _embedded(keyed)
    outcome: dict[str, Any] = {}

    def upsert() -> None:
        outcome["reply"] = raw_rest(keyed, "PUT", f"/collections/{keyed.collection}/points?wait=true",
                                    body, keyed.key)

    worker = threading.Thread(target=upsert)
    worker.start()
    answered_in_flight, answered_while_embedding, latencies = 0, 0, []
    deadline = time.monotonic() + 120
    while worker.is_alive() and time.monotonic() < deadline:
        running_before = keyed.metric("switchyard_embeddings_in_flight")
        latencies.append(keyed.healthz())
        if worker.is_alive():
            answered_in_flight += 1
        if running_before > 0 and keyed.metric("switchyard_embeddings_in_flight") > 0:
            answered_while_embedding += 1
        time.sleep(0.02)  # probes at ~50 a second, not flat out: each metrics page takes the
        # proxy's GIL from the embedding it watches (which runs for over a second)
    worker.join(120)
    assert outcome["reply"][0] == 200, outcome["reply"]
    assert _embedded(keyed) == before + 128
    assert answered_in_flight >= 1
    assert answered_while_embedding >= 1
    print(f"\nmax request (128 x 8192 chars) in flight: healthz answered {answered_in_flight} times "
          f"({answered_while_embedding} while the embedding ran), slowest {max(latencies) * 1000:.1f} ms")


def _refusal(exc: BaseException) -> tuple[Any, str]:
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code, orjson.loads(exc.content)["status"]["error"]
    assert isinstance(exc, grpc.RpcError)
    return exc.code().name, exc.details() or ""
