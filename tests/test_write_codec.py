"""The REST write codec splices, it does not re-encode: what reaches Qdrant is the client's bytes.

Properties (hypothesis, the congruence style of the engine tests), through the real executor
with a recording ``forward`` (the interceptor seam):

- a bound write whose points already carry the metadata is forwarded byte for byte as the
  client sent it, whatever its integers (beyond 64 bits too), floats (many digits, exponents),
  strings (unicode, escapes) and spacing: the same bytes the pass-through path forwards;
- a bound write without metadata is forwarded as the client's bytes plus the inserted fields
  only (removing them gives the client's bytes back), and parses to the client's body with the
  metadata added to every payload.

Plus table tests of the shapes the cursor reads and of the bodies it must refuse to touch.
"""

from __future__ import annotations

import asyncio
import json
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.proxy.intercept import rest_codec
from switchyard.proxy.intercept.executor import Executor
from switchyard.proxy.intercept.json_scan import Cursor, ScanError
from switchyard.proxy.intercept.operation import OpKind, VectorKind
from switchyard.proxy.intercept.planner import metadata_for
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.snapshot import StateSnapshot
from switchyard.proxy.wire import RestCall, RestReply

SPEC = ModelSpec(id="m", provider="hashing", model="hash-m", dimensions=3, fingerprint="sha256:" + "f" * 64)
META = metadata_for(SPEC)
OK = RestReply(200, (("content-type", "application/json"),),
               b'{"result":{"operation_id":0,"status":"completed"},"status":"ok","time":0.0}')


class _State:
    snapshot = StateSnapshot(models=MappingProxyType({"m": SPEC}),
                             bindings=MappingProxyType({"bound": Binding("bound", "m")}))


def forwarded(collection: str, body: bytes) -> bytes:
    """What the executor sends upstream for a client's ``PUT /collections/{c}/points``."""
    sent: list[bytes] = []

    async def forward(call: RestCall) -> RestReply:
        sent.append(call.body)
        return OK

    call = RestCall("PUT", f"/collections/{collection}/points", "wait=true",
                    (("content-type", "application/json"),), body)
    reply = asyncio.run(Executor(_State()).rest(call, forward))
    assert reply.status == 200 and len(sent) == 1
    return sent[0]


# -- bodies: numbers, strings and spacing as any client may print them

_INTS = st.one_of(st.integers(-(2**63), 2**64 - 1), st.integers(2**64, 2**80), st.integers(-(2**80), -(2**63)))
_FLOAT_TEXT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(-1, 1, width=32).map(lambda x: f"{x:.20f}"),   # many digits after the point
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: f"{x:.9E}"),
    st.integers(-9, 9).map(str),
)
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ['quote " inside', "back\\slash", "é ü 中文 😀", "\u2028\u2029", "tab\tnew\nline", "{\"payload\": [1]}"])
_KEYS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda k: k not in META)
_SCALARS = st.one_of(st.none(), st.booleans(), _INTS, st.floats(allow_nan=False, allow_infinity=False), _TEXT)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
                       max_leaves=8)


class _Raw:
    """A number printed exactly as drawn (json.dumps would reprint it)."""

    def __init__(self, text: str) -> None:
        self.text = text


@st.composite
def _bodies(draw: Any, with_meta: bool) -> tuple[bytes, list[dict[str, Any]]]:
    points = []
    for i in range(draw(st.integers(1, 4))):
        payload = draw(st.dictionaries(_KEYS, _VALUES, max_size=4))
        if with_meta:
            payload.update(META)
        vector = [_Raw(draw(_FLOAT_TEXT)) for _ in range(3)]
        point_id: Any = draw(st.one_of(_INTS.filter(lambda n: n >= 0), st.uuids().map(str)))
        points.append({"id": point_id, "vector": vector, "payload": payload})
    style = draw(st.sampled_from(["compact", "spaced", "indented", "ascii"]))
    return _print({"points": points}, style), [p["payload"] for p in points]


def _print(body: Any, style: str) -> bytes:
    """json.dumps in the drawn style, with each vector number spliced in as drawn."""
    numbers: list[str] = []

    def default(value: Any) -> Any:
        numbers.append(value.text)
        return f"\x00{len(numbers) - 1}\x00"

    kwargs: dict[str, Any] = {"compact": {"separators": (",", ":"), "ensure_ascii": False},
                              "spaced": {"ensure_ascii": False}, "indented": {"indent": 2},
                              "ascii": {"ensure_ascii": True}}[style]
    text = json.dumps(body, default=default, **kwargs)
    for i, number in enumerate(numbers):
        text = text.replace(f'"\\u0000{i}\\u0000"', number, 1)
    return text.encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies(with_meta=True))
def test_bound_write_with_metadata_is_forwarded_byte_for_byte(case: tuple[bytes, Any]) -> None:
    raw, _ = case
    assert forwarded("bound", raw) == raw == forwarded("unbound", raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies(with_meta=False))
def test_bound_write_gets_only_the_metadata_inserted(case: tuple[bytes, Any]) -> None:
    raw, payloads = case
    out = forwarded("bound", raw)
    members = orjson.dumps(META)[1:-1]
    assert out.replace(members + b",", b"").replace(members, b"") == raw
    sent = json.loads(out)
    assert [p["payload"] for p in sent["points"]] == [{**META, **p} for p in payloads]
    assert [p["vector"] for p in sent["points"]] == [p["vector"] for p in json.loads(raw)["points"]]


# -- tables: shapes the codec reads, and bodies it leaves alone

F = {"embedding_model_id": "m"}


@pytest.mark.parametrize("body, vectors, stamped", [
    # (body, per-point {vector name: (kind, dims)}, the forwarded body parsed)
    (b'{"points":[{"id":1,"vector":[1,2,3]}]}', [{"": ("dense", 3)}],
     {"points": [{"id": 1, "vector": [1, 2, 3], "payload": F}]}),
    (b'{"points":[{"id":1,"payload":null,"vector":[1]}]}', [{"": ("dense", 1)}],
     {"points": [{"id": 1, "payload": F, "vector": [1]}]}),
    (b'{"points":[{"id":1,"vector":[ ],"payload":{}}]}', [{"": ("dense", 0)}],
     {"points": [{"id": 1, "vector": [], "payload": F}]}),
    (b'{"points":[{"vector":{"a":[1,2],"s":{"indices":[1],"values":[0.5]}},"id":"u"}]}',
     [{"a": ("dense", 2), "s": ("sparse", None)}],
     {"points": [{"vector": {"a": [1, 2], "s": {"indices": [1], "values": [0.5]}}, "id": "u", "payload": F}]}),
    (b'{"points":[{"id":1,"vector":[[1,2],[3,4]],"payload":{"x":1}}]}', [{"": ("multi_dense", 2)}],
     {"points": [{"id": 1, "vector": [[1, 2], [3, 4]], "payload": {**F, "x": 1}}]}),
    (b'{"points":[{"id":1,"vector":{"text":"t","model":"x"}}]}', [{"": ("inference", None)}],
     {"points": [{"id": 1, "vector": {"text": "t", "model": "x"}, "payload": F}]}),
    (b'{"batch":{"ids":[1,2],"vectors":[[1],[2]]}}', [{"": ("dense", 1)}, {"": ("dense", 1)}],
     {"batch": {"ids": [1, 2], "vectors": [[1], [2]], "payloads": [F, F]}}),
    (b'{"batch":{"ids":[1,2],"vectors":{"a":[[1],[2]]},"payloads":[null,{"y":2}]}}',
     [{"a": ("dense", 1)}, {"a": ("dense", 1)}],
     {"batch": {"ids": [1, 2], "vectors": {"a": [[1], [2]]}, "payloads": [F, {**F, "y": 2}]}}),
    (b'{"batch":{"ids":[7],"vectors":[[1]],"payloads":null}}', [{"": ("dense", 1)}],
     {"batch": {"ids": [7], "vectors": [[1]], "payloads": [F]}}),
    (b'{"points":[{"id":18446744073709551616,"vector":[1],"payload":{"n":123456789012345678901234567890}}]}',
     [{"": ("dense", 1)}],
     {"points": [{"id": 18446744073709551616, "vector": [1], "payload": {**F, "n": 123456789012345678901234567890}}]}),
])
def test_upsert_shapes(body: bytes, vectors: list[dict[str, Any]], stamped: Any) -> None:
    decoded = rest_codec.decode(OpKind.UPSERT, "c", body)
    assert decoded is not None
    op, message = decoded
    assert [{n: (v.kind.value, v.dims) for n, v in p.vectors.items()} for p in op.points] == vectors
    message.stamp(F)
    assert json.loads(message.encode()) == stamped


def test_inference_objects_are_replaced_in_place() -> None:
    raw = b'{"points": [{"id": 1, "vector": {"d": {"text": "hi", "model": "m"}, "e": [1]}, "payload": {"a": 1}}]}'
    op, message = rest_codec.decode(OpKind.UPSERT, "c", raw)  # type: ignore[misc]
    assert op.points[0].vectors["d"].kind is VectorKind.INFERENCE
    (slot,) = message.inference_slots()
    assert (slot.text, slot.model) == ("hi", "m")
    slot.put([0.5, 0.25])
    assert message.encode() == raw.replace(b'{"text": "hi", "model": "m"}', b"[0.5,0.25]")


def test_batch_update_and_overwrite() -> None:
    raw = (b'{"operations":[{"upsert":{"points":[{"id":1,"vector":[1]}]}},'
           b'{"overwrite_payload":{"points":[1],"payload":{"a":1}}},{"delete":{"points":[2]}},'
           b'{"overwrite_payload":{"points":[1],"payload":{"a":1},"key":"k"}}]}')
    op, message = rest_codec.decode(OpKind.BATCH, "c", raw)  # type: ignore[misc]
    assert [p.id for p in op.points] == ["1", "payload of 1 point(s)"]
    assert op.payload_only == frozenset({"payload of 1 point(s)"})
    message.stamp(F)
    ops = json.loads(message.encode())["operations"]
    assert ops[0]["upsert"]["points"][0]["payload"] == F
    assert ops[1]["overwrite_payload"]["payload"] == {**F, "a": 1}
    assert ops[3]["overwrite_payload"]["payload"] == {"a": 1}  # keyed: one nested key only


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"[]", b'{"points":{}}', b'{"points":[{"vector":[1]}]}', b'{"points":[1]}',
    b'{"points":[{"id":1,"payload":[1]}]}', b'{"points":[{"id":1}]} trailing', b'{"batch":{"ids":[1],"payloads":[]}}',
    b'{"points":[{"id":1,"vector":[1,2' , b"\xff\xfe", b"[" * 100_000, b'{"points":[{"id":1,"payload":' + b"[" * 100_000,
    b'{"points":[{"id":1,"payload":{"a":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}}]}",
])
def test_bodies_left_untouched(raw: bytes) -> None:
    """Not a write the codec reads (or too deep to read): ``None``, so the client's bytes go
    to Qdrant as they are and the client gets Qdrant's own error."""
    assert rest_codec.decode(OpKind.UPSERT, "c", raw) is None


def test_cursor_flat_array_refuses_what_it_cannot_skip() -> None:
    for text, dims in [("[1, 2.5e-3, -4]", 3), ("[]", 0), ("[ ]", 0)]:
        assert Cursor(text.encode()).flat_array(True) == dims
    for text in ('["a]"]', "[[1]]", "[{}]", "[1, 2"):
        assert Cursor(text.encode()).flat_array(True) is None
    with pytest.raises(ScanError):
        Cursor(b"{1}").key()
