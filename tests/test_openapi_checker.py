"""The OpenAPI response checker itself: a response that breaks Qdrant's spec is reported, and a
repeat of one already validated (the same bytes but for the trailing ``time``) is skipped."""

from __future__ import annotations

from openapi_check import ResponseChecker


def test_each_distinct_response_is_validated_once() -> None:
    checker = ResponseChecker()
    ok = b'{"result":{"collections":[{"name":"a"}]},"status":"ok","time":0.001}'
    checker.record("GET", "/collections", 200, ok)
    checker.record("GET", "/collections", 200, ok.replace(b"0.001", b"2.5e-05"))  # a repeat
    checker.record("GET", "/collections", 200, ok.replace(b'"name"', b'"nam"'))  # name is required
    checker.record("GET", "/collections", 200, ok.replace(b'"time":0.001', b'"time":"slow"'))
    failures = checker.check_all()
    assert (checker.validated, checker.repeats) == (3, 1)
    assert len(failures) == 2 and all(f.startswith("GET /collections 200") for f in failures)
    assert "at /result/collections/0:" in failures[0] and "name" in failures[0]  # where, and what
    assert "at /time:" in failures[1] and "number" in failures[1]
