"""Tables for the credential gate's decisions and the inference bounds, and the gate's caching.

The gate is driven through its forward seam (ours: ``switchyard.proxy.wire.RestForward``) by a stand-in
that answers as Qdrant's key check does (``switchyard.proxy.embedded.auth.ApiKeys``), so the tests see how
many probes each caller costs.
"""

from __future__ import annotations

import asyncio
import hashlib

import orjson
import pytest

from switchyard.proxy.dataplane.query_vectors import SlotInfo, inference_texts
from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.errors import BadRequest, SwitchyardError
from switchyard.proxy.intercept.credentials import (
    READ,
    WRITE,
    CredentialGate,
    Outcome,
    Step,
    credential_digest,
    grpc_status,
    judge,
    needs_key_from,
    next_step,
    rest_status,
)
from switchyard.proxy.intercept.inference import (
    DEFAULT_TEXT_CHARS,
    InferenceLimits,
    bound_problem,
    check_bounds,
    model_text_chars,
)
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.wire import GrpcCall, GrpcReply, RestCall, RestReply

HASH = ModelSpec(id="h", provider="hashing", model="h", dimensions=4)
LOCAL = ModelSpec(id="l", provider="local", model="x", dimensions=4, max_length=512)
OPENAI = ModelSpec(id="o", provider="openai", model="text-embedding-3-small", dimensions=4,
                   base_url="http://127.0.0.1:9/v1")


@pytest.mark.parametrize(("access", "status", "outcome"), [
    (READ, "ok", Outcome.ALLOW),
    (WRITE, "ok", Outcome.ALLOW),
    (READ, "not_found", Outcome.ALLOW),         # past the access check: the real call gets its 404
    (WRITE, "not_found", Outcome.ALLOW),
    (READ, "unauthenticated", Outcome.REFUSE),
    (WRITE, "unauthenticated", Outcome.REFUSE),
    (READ, "forbidden", Outcome.REFUSE),
    (WRITE, "forbidden", Outcome.REFUSE),       # read-only key on the write probe
    (WRITE, "bad_request", Outcome.ALLOW),      # "Empty update request": after the access check
    (READ, "bad_request", Outcome.UNKNOWN),
    (READ, "other", Outcome.UNKNOWN),           # 5xx / 429: says nothing about access
    (WRITE, "other", Outcome.UNKNOWN),
])
def test_judge(access: str, status: str, outcome: Outcome) -> None:
    assert judge(access, status) is outcome


@pytest.mark.parametrize(("status", "needs"), [
    ("ok", False), ("not_found", False), ("unauthenticated", True), ("forbidden", True),
    ("bad_request", None), ("other", None),
])
def test_needs_key_from(status: str, needs: bool | None) -> None:
    assert needs_key_from(status) is needs


@pytest.mark.parametrize(("needs", "cached", "step"), [
    (None, None, Step.PROBE_KEYLESS),
    (None, Outcome.ALLOW, Step.PROBE_KEYLESS),
    (False, None, Step.GO),
    (False, Outcome.REFUSE, Step.GO),  # the upstream stopped needing a key
    (True, None, Step.PROBE),
    (True, Outcome.ALLOW, Step.GO),
    (True, Outcome.REFUSE, Step.REFUSE),
])
def test_next_step(needs: bool | None, cached: Outcome | None, step: Step) -> None:
    assert next_step(needs, cached) is step


@pytest.mark.parametrize(("status", "cls"), [
    (200, "ok"), (204, "ok"), (400, "bad_request"), (401, "unauthenticated"), (403, "forbidden"),
    (404, "not_found"), (429, "other"), (500, "other"), (503, "other"),
])
def test_rest_status(status: int, cls: str) -> None:
    assert rest_status(status) == cls


@pytest.mark.parametrize(("code", "cls"), [
    ("OK", "ok"), ("UNAUTHENTICATED", "unauthenticated"), ("PERMISSION_DENIED", "forbidden"),
    ("NOT_FOUND", "not_found"), ("INVALID_ARGUMENT", "bad_request"), ("UNAVAILABLE", "other"),
])
def test_grpc_status(code: str, cls: str) -> None:
    assert grpc_status(code) == cls


def test_digest_covers_only_credentials_and_never_holds_them() -> None:
    a = credential_digest((("api-key", "secret-1"), ("x-trace", "1")))
    assert a == credential_digest((("x-trace", "2"), ("api-key", "secret-1")))
    assert a != credential_digest((("api-key", "secret-2"),))
    assert a != credential_digest((("authorization", "Bearer secret-1"),))
    assert credential_digest(()) == hashlib.sha256(b"").hexdigest()
    assert "secret" not in a and len(a) == 64


# -- inference bounds

@pytest.mark.parametrize(("spec", "chars"), [
    (HASH, DEFAULT_TEXT_CHARS), (LOCAL, DEFAULT_TEXT_CHARS), (OPENAI, 8191 * 8),
    (ModelSpec(id="l2", provider="local", model="x", dimensions=4, max_length=2048), 2048 * 8),
    (ModelSpec(id="o2", provider="openai", model="m", dimensions=4, max_length=100,
               base_url="http://127.0.0.1:9/v1"), DEFAULT_TEXT_CHARS),
])
def test_model_text_chars(spec: ModelSpec, chars: int) -> None:
    assert model_text_chars(spec) == chars


@pytest.mark.parametrize(("texts", "limits", "limit"), [
    ([], InferenceLimits(), None),
    ([(8192, HASH)], InferenceLimits(), None),
    ([(8193, HASH)], InferenceLimits(), "max_inference_text_chars"),
    ([(8193, LOCAL)], InferenceLimits(), "max_inference_text_chars"),
    ([(60_000, OPENAI)], InferenceLimits(), None),
    ([(10_000_000, HASH)], InferenceLimits(), "max_inference_text_chars"),
    ([(9000, HASH)], InferenceLimits(per_object=9000), None),
    ([(9001, HASH)], InferenceLimits(per_object=9000), "max_inference_text_chars"),
    ([(8000, HASH)] * 131, InferenceLimits(), None),                    # 1,048,000 chars
    ([(8000, HASH)] * 132, InferenceLimits(), "max_inference_request_chars"),
    ([(10, HASH)] * 3, InferenceLimits(per_request=30), None),
    ([(10, HASH)] * 4, InferenceLimits(per_request=30), "max_inference_request_chars"),
])
def test_bound_problem(texts: list[tuple[int, ModelSpec]], limits: InferenceLimits, limit: str | None) -> None:
    found = bound_problem(texts, limits)
    assert (found[0] if found else None) == limit
    if found:
        assert limit is not None and limit in found[1]  # the message names the option to raise


def test_check_bounds_is_a_qdrant_shaped_400() -> None:
    with pytest.raises(BadRequest) as err:
        check_bounds([(10_000_000, HASH)], InferenceLimits())
    assert err.value.http_status == 400 and err.value.grpc_code == "INVALID_ARGUMENT"
    assert err.value.message.startswith("Wrong input: ") and "8192" in err.value.message


def test_inference_texts_counts_registered_models_only() -> None:
    slots = [SlotInfo(text="abc", model="h"), SlotInfo(dims=4), SlotInfo(text="zz", model="unknown"),
             SlotInfo(text="hello", model="text-embedding-3-small")]
    assert inference_texts(slots, {"h": HASH, "o": OPENAI}) == [(3, HASH), (5, OPENAI)]


# -- the gate over a stand-in upstream that checks keys as Qdrant does

class KeyedUpstream:
    """Answers the probes as an upstream with ``keys`` would; counts them."""

    def __init__(self, keys: ApiKeys) -> None:
        self.keys = keys
        self.calls: list[tuple[str, str, str | None]] = []
        self.release: asyncio.Event | None = None

    async def rest(self, call: RestCall) -> RestReply:
        headers = dict(call.headers)
        self.calls.append((call.method, call.path, headers.get("api-key")))
        if self.release is not None:
            await self.release.wait()
        try:
            self.keys.check(headers, write=call.method == "POST")
        except SwitchyardError as exc:
            return RestReply(exc.http_status, (("content-type", "application/json"),), exc.to_json())
        if call.method == "POST":
            return RestReply(400, (), orjson.dumps({"status": {"error": "Wrong input: Empty update request"}}))
        return RestReply(200, (), b'{"result":{"exists":true},"status":"ok","time":0}')

    async def grpc(self, call: GrpcCall) -> GrpcReply:
        headers = dict(call.metadata)
        self.calls.append(("grpc", call.method, headers.get("api-key")))
        try:
            self.keys.check(headers, write=call.method.endswith("/Delete"))
        except SwitchyardError as exc:
            return GrpcReply(None, exc.grpc_code, exc.message)
        return GrpcReply(b"", "OK")


def _call(key: str | None) -> RestCall:
    headers = (("api-key", key),) if key else ()
    return RestCall("POST", "/collections/c/points/query", "", headers + (("x-other", "1"),), b"{}")


async def test_gate_caches_verdicts_per_credential_and_access() -> None:
    up = KeyedUpstream(ApiKeys(api_key="full", read_only_api_key="ro"))
    gate = CredentialGate(ttl=60)
    for _ in range(3):
        assert await gate.rest(_call("full"), "c", READ, up.rest) is None
        assert await gate.rest(_call("full"), "c", WRITE, up.rest) is None
        assert await gate.rest(_call("ro"), "c", READ, up.rest) is None
        refused = await gate.rest(_call("ro"), "c", WRITE, up.rest)
        assert refused is not None and refused.status == 403
        anonymous = await gate.rest(_call(None), "c", READ, up.rest)
        assert anonymous is not None and anonymous.status == 401
        assert b"Must provide an API key" in anonymous.body
        wrong = await gate.rest(_call("nope"), "c", WRITE, up.rest)
        assert wrong is not None and wrong.status == 401
    # one keyless probe (also the anonymous caller's verdict), then one per key and access class
    assert up.calls == [
        ("GET", "/collections/c/exists", None),
        ("GET", "/collections/c/exists", "full"),
        ("POST", "/collections/c/points/delete", "full"),
        ("GET", "/collections/c/exists", "ro"),
        ("POST", "/collections/c/points/delete", "ro"),
        ("POST", "/collections/c/points/delete", "nope"),
    ]
    assert await gate.rest(_call("full"), "other", READ, up.rest) is None  # per collection
    assert up.calls[-1] == ("GET", "/collections/other/exists", "full")


async def test_gate_open_upstream_costs_one_probe_per_ttl() -> None:
    up = KeyedUpstream(ApiKeys())
    gate = CredentialGate(ttl=60)
    for key in ("a", "b", None):
        assert await gate.rest(_call(key), "c", WRITE, up.rest) is None
    assert up.calls == [("GET", "/collections/c/exists", None)]


async def test_gate_coalesces_concurrent_probes_of_one_key() -> None:
    up = KeyedUpstream(ApiKeys(api_key="full"))
    up.release = asyncio.Event()
    gate = CredentialGate(ttl=60)
    waiting = [asyncio.ensure_future(gate.rest(_call(None), "c", READ, up.rest)) for _ in range(50)]
    await asyncio.sleep(0.05)
    up.release.set()
    replies = await asyncio.gather(*waiting)
    assert {r.status for r in replies if r is not None} == {401} and all(r is not None for r in replies)
    assert len(up.calls) == 1


async def test_gate_expires_verdicts() -> None:
    up = KeyedUpstream(ApiKeys(api_key="full"))
    gate = CredentialGate(ttl=0.05)
    assert await gate.rest(_call("full"), "c", READ, up.rest) is None
    await asyncio.sleep(0.1)
    assert await gate.rest(_call("full"), "c", READ, up.rest) is None
    assert [c[2] for c in up.calls] == [None, "full", None, "full"]


async def test_gate_grpc_answers_with_the_upstreams_code() -> None:
    up = KeyedUpstream(ApiKeys(api_key="full", read_only_api_key="ro"))
    gate = CredentialGate(ttl=60)

    def call(key: str | None) -> GrpcCall:
        return GrpcCall("/qdrant.Points/Upsert", b"", (("api-key", key),) if key else (), 5.0)

    anonymous = await gate.grpc(call(None), "c", WRITE, up.grpc)
    assert anonymous is not None and anonymous.code == "UNAUTHENTICATED"
    assert anonymous.details == "Must provide an API key or an Authorization bearer token"
    ro = await gate.grpc(call("ro"), "c", WRITE, up.grpc)
    assert ro is not None and ro.code == "PERMISSION_DENIED"
    assert await gate.grpc(call("ro"), "c", READ, up.grpc) is None
    assert await gate.grpc(call("full"), "c", WRITE, up.grpc) is None
    assert [c[1] for c in up.calls] == [
        "/qdrant.Collections/CollectionExists", "/qdrant.Points/Delete",
        "/qdrant.Points/Delete", "/qdrant.Collections/CollectionExists", "/qdrant.Points/Delete"]


async def test_gate_unknown_answers_go_on_uncached() -> None:
    calls = []

    async def flaky(call: RestCall) -> RestReply:
        calls.append(call.path)
        if dict(call.headers).get("api-key") is None:
            return RestReply(401, (), b'{"status":{"error":"Must provide an API key"}}')
        return RestReply(503, (), b"busy")

    gate = CredentialGate(ttl=60)
    assert await gate.rest(_call("k"), "c", READ, flaky) is None
    assert await gate.rest(_call("k"), "c", READ, flaky) is None
    assert len(calls) == 3  # keyless once; the unknown verdict is asked again
