"""The mirror's gRPC secondary upsert: the hand-packed request decodes, with qdrant-client's own
protobuf classes, to exactly the points the REST body carries; the channel falls back to REST
on every failure and rests after one."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from qdrant_client import grpc as g
from qdrant_client.conversions.conversion import GrpcToRest

from switchyard.proxy.dataplane.secondary_channel import REST_SECONDS, SecondaryChannel
from switchyard.proxy.dataplane.secondary_grpc import METHOD, upsert_request
from switchyard.proxy.wire import GrpcCall, GrpcReply

META = {"switchyard_model": "b", "switchyard_dims": 3}
ROWS = np.array([[0.1, -0.2, 0.3], [1e-7, 2.5, -3.75]], dtype=np.float32)
U = str(uuid.uuid4())


def decoded(body: bytes, name: str) -> list[dict[str, Any]]:
    msg = g.UpsertPoints.FromString(body)
    assert msg.collection_name == "target" and msg.wait
    out = []
    for p in msg.points:
        vec = p.vectors.vectors.vectors[name] if name else p.vectors.vector
        out.append({"id": p.id.uuid or p.id.num, "payload": GrpcToRest.convert_payload(p.payload),
                    "vector": np.array(vec.dense.data, dtype=np.float32)})
    return out


@pytest.mark.parametrize("ids,payloads,name", [
    ([1, 2**64 - 1], [{"text": "a"}, {}], ""),
    ([U, 7], [{"n": {"deep": [1, 2.5, None, True, "é\"\\"]}}, {"switchyard_model": "a", "x": -3}], "dense_b"),
    ([0, 300], [{"big": 2**62, "f": 0.1}, {"empty": {}, "list": []}], "v"),
])
def test_request_decodes_to_the_points_a_rest_body_carries(ids: list[Any], payloads: list[dict[str, Any]],
                                                            name: str) -> None:
    got = decoded(upsert_request("target", ids, payloads, ROWS, name, META), name)
    assert [p["id"] for p in got] == ids
    # the model's metadata wins over a client's field of the same name, as in the REST body
    assert [p["payload"] for p in got] == [{**own, **META} for own in payloads]
    assert all(np.array_equal(p["vector"], row) for p, row in zip(got, ROWS))


@pytest.mark.parametrize("ids,payloads,why", [
    ([2**64, 1], [{}, {}], r"outside 0\.\.2\^64-1"),
    ([-1, 1], [{}, {}], "outside"),
    ([1.5, 1], [{}, {}], "neither"),
    ([1, 2], [{"n": 2**70}, {}], ""),  # beyond int64: protobuf refuses, the write goes over REST
    ([1], [{}], "1 ids, 1 payloads and 2 vectors"),
])
def test_what_cannot_be_encoded_is_refused(ids: list[Any], payloads: list[dict[str, Any]], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        upsert_request("target", ids, payloads, ROWS, "", META)


class Upstream:
    """The seam: a GrpcForward that answers ``code`` and keeps the calls."""

    def __init__(self) -> None:
        self.code, self.calls = "OK", []  # type: tuple[str, list[GrpcCall]]

    async def __call__(self, call: GrpcCall) -> GrpcReply:
        self.calls.append(call)
        return GrpcReply(b"" if self.code == "OK" else None, self.code, "no gRPC here")


async def test_channel_writes_over_grpc_and_falls_back_then_rests() -> None:
    now = [100.0]
    upstream = Upstream()
    channel = SecondaryChannel(upstream, 5.0, clock=lambda: now[0])
    headers = (("api-key", "k"), ("x-other", "dropped"))

    async def send(ids: list[Any] | None = None) -> bool:
        return await channel.upsert("target", headers, ids or [1, 2], [{}, {}], ROWS, "", META)

    assert await send() is True
    call = upstream.calls[-1]
    assert call.method == METHOD and call.metadata == (("api-key", "k"),) and call.timeout == 5.0
    assert [p["id"] for p in decoded(call.request, "")] == [1, 2]
    upstream.code = "UNAVAILABLE"
    assert await send() is False and "UNAVAILABLE" in (channel.reason or "")
    upstream.code = "OK"
    calls = len(upstream.calls)
    now[0] += REST_SECONDS - 1
    assert await send() is False and len(upstream.calls) == calls  # resting: REST, no gRPC call
    now[0] += 2
    assert await send() is True
    # a write that cannot be encoded goes over REST without resting the channel
    assert await send([2**64, 1]) is False and "cannot go over gRPC" in (channel.reason or "")
    assert await send() is True


async def test_a_failing_channel_is_a_fallback_not_an_error() -> None:
    async def broken(call: GrpcCall) -> GrpcReply:
        raise RuntimeError("channel closed")

    channel = SecondaryChannel(broken, None)
    assert await channel.upsert("target", (), [1, 2], [{}, {}], ROWS, "", META) is False
    assert "channel closed" in (channel.reason or "")
