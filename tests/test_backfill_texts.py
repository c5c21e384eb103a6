"""Text fetchers: payload field, Python callable, HTTP endpoint (a real server on port 0)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from qdrant_client import models

from switchyard.backfill.texts import CallableText, HttpText, PayloadText, make_fetcher
from switchyard.proxy.errors import ConfigError, UpstreamError

RECORDS = [models.Record(id=1, payload={"text": "one", "doc_id": "a"}),
           models.Record(id=2, payload={"text": 5, "doc_id": "b"}),
           models.Record(id=3, payload={"doc_id": "c"})]


def upper_keys(keys: list[Any], payloads: list[dict[str, Any]]) -> list[str | None]:
    return [None if k == "c" else f"text of {k}" for k in keys]


async def test_payload_and_callable_fetchers() -> None:
    assert await PayloadText("text")(RECORDS) == ["one", None, None]
    fetch = make_fetcher("test_backfill_texts:upper_keys", "text", "doc_id")
    assert isinstance(fetch, CallableText)
    assert await fetch(RECORDS) == ["text of a", "text of b", None]
    with pytest.raises(UpstreamError, match="returned 1 texts for 3"):
        await CallableText(lambda k, p: ["x"], "doc_id")(RECORDS)
    for bad in ("nomodule", "no_such_module_xyz:f", "test_backfill_texts:nope"):
        with pytest.raises(ConfigError):
            make_fetcher(bad, "text", "doc_id")


async def test_http_fetcher() -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            keys = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["keys"]
            body = json.dumps({"texts": {k: f"http {k}" for k in keys if k != "b"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        fetch = make_fetcher(f"http://127.0.0.1:{server.server_port}/texts", "text", "doc_id")
        assert isinstance(fetch, HttpText)
        assert await fetch(RECORDS) == ["http a", None, "http c"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    with pytest.raises(UpstreamError, match="text fetcher"):
        await HttpText(f"http://127.0.0.1:{server.server_port}/texts", "doc_id", timeout=2)(RECORDS)
