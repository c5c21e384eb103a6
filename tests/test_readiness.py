"""Issue 11 item 11: liveness and readiness.

The decision as a table and the cached probe; then real processes: a proxy whose upstream is cut
(``tests/fault_relay.py``) stays live (healthz 200) but is not ready (readyz 503, Qdrant-shaped,
naming the upstream), and is ready again once healed; ``switchyard proxy`` in front of an
upstream that does not answer never prints the ready line and exits non-zero with the reason
after its bounded wait.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

from fault_relay import FaultRelay
from switchyard.proxy.errors import UpstreamError
from switchyard.proxy.readiness import NotReady, Readiness, not_ready
from proxy_fixtures import RunningProxy, start_proxy
from upstream_process import run_proxy_until_exit


@pytest.mark.parametrize(("stopping", "upstream", "stale", "expected"), [
    (False, None, None, None),
    (True, None, None, "the proxy is stopping"),
    (True, "refused", "stale", "the proxy is stopping"),
    (False, "connection refused", None, "upstream unreachable: connection refused"),
    (False, "connection refused", "stale", "upstream unreachable: connection refused"),
    (False, None, "Switchyard cannot read its migration state for 9.0 s",
     "Switchyard cannot read its migration state for 9.0 s"),
])
def test_not_ready_table(stopping: bool, upstream: str | None, stale: str | None,
                         expected: str | None) -> None:
    assert not_ready(stopping, upstream, stale) == expected


async def test_probe_is_cached_and_bounded() -> None:
    calls: list[int] = []
    failing = [False]

    async def probe() -> None:
        calls.append(1)
        if failing[0]:
            raise UpstreamError("connection refused")

    ready = Readiness(probe, ttl=60.0)
    assert await ready.check() is None
    failing[0] = True
    for _ in range(5):
        assert await ready.check() is None  # the cached outcome, one probe in all
    assert len(calls) == 1
    ready.ttl = 0.0
    assert await ready.check() == "upstream unreachable: connection refused"
    with pytest.raises(NotReady, match="not ready after 0.1 s: upstream unreachable"):
        await ready.wait(0.1, poll=0.02)
    stale = Readiness(probe, lambda: "state is stale", ttl=0.0)
    failing[0] = False
    assert await stale.check() == "state is stale"


def _status(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def relayed_proxy(upstream: Any) -> Iterator[tuple[RunningProxy, FaultRelay]]:
    parsed = urlparse(upstream.rest_url)
    relay = FaultRelay(parsed.hostname or "127.0.0.1", parsed.port or 6333).start()
    running = start_proxy(relay.url, upstream.grpc_host, upstream.grpc_port,
                          {"state_max_staleness": "1"})
    try:
        yield running, relay
    finally:
        relay.fail(None)
        running.proxy.stop()
        relay.stop()


def test_live_but_not_ready_while_upstream_cut(relayed_proxy: tuple[RunningProxy, FaultRelay]) -> None:
    proxy, relay = relayed_proxy
    deadline = time.monotonic() + 20  # ready first: on a loaded machine the state read can lag
    while (found := _status(proxy.rest_url + "/switchyard/readyz"))[0] != 200:
        assert time.monotonic() < deadline, f"readyz never became ready: {found}"
        time.sleep(0.1)
    assert found == (200, {"status": "ok"})
    relay.fail("HTTP/1.1")  # every request to the upstream is cut: it does not answer
    deadline = time.monotonic() + 20
    while "upstream unreachable" not in str((found := _status(proxy.rest_url + "/switchyard/readyz"))[1]):
        assert time.monotonic() < deadline, f"readyz never named the upstream: {found}"
        time.sleep(0.1)
    status, body = found
    assert status == 503
    assert set(body) == {"status", "time"} and "Service unavailable" in body["status"]["error"]
    assert _status(proxy.rest_url + "/switchyard/healthz") == (200, {"status": "ok"})
    relay.fail(None)
    deadline = time.monotonic() + 20
    while _status(proxy.rest_url + "/switchyard/readyz")[0] != 200:
        assert time.monotonic() < deadline, "readyz never recovered"
        time.sleep(0.1)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_ready_line_when_upstream_unreachable() -> None:
    port = _closed_port()
    rc, out, err = run_proxy_until_exit(f"http://127.0.0.1:{port}", ["--ready-timeout", "2"],
                                        grpc_address=f"127.0.0.1:{port}", timeout=60)
    assert rc != 0
    assert "ready" not in out
    assert "state store unreadable" in err and "upstream is running" in err, err
