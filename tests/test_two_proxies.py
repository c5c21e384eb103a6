"""Two real proxy processes on one upstream agree on a migration's phase.

A transition made through one proxy's admin API waits until both proxies act on it; both then
route the logical name as the phase dictates; after one proxy is killed with SIGKILL, the next
transition's wait ends once the dead proxy's heartbeat is older than its TTL, and the status
names it as gone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

ADMIN_KEY = "admin-" + uuid.uuid4().hex[:6]
#: Through a proxy with an admin key, Switchyard's commands reach _switchyard with that key.
TOOL_ENV = {"SWITCHYARD_ADMIN_KEY": ADMIN_KEY}
READY = re.compile(r"switchyard proxy ready rest=(\S+) grpc=(\S+)")


class ProxyProcess:
    def __init__(self, upstream: Any, instance: str) -> None:
        cmd = [sys.executable, "-m", "switchyard.proxy", "proxy",
               "--upstream-rest-url", upstream.rest_url,
               "--upstream-grpc-address", f"{upstream.grpc_host}:{upstream.grpc_port}",
               "--listen-rest", "127.0.0.1:0", "--listen-grpc", "127.0.0.1:0",
               "--instance-id", instance, "--admin-key", ADMIN_KEY,
               "--state-cache-ttl", "0.2", "--heartbeat-interval", "0.3", "--heartbeat-ttl", "3",
               "--max-active-migrations", "1000", "--drain-seconds", "1"]
        self.instance = instance
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if m := READY.search(line):
                self.rest = "http://" + m[1].replace("0.0.0.0", "127.0.0.1")
                return
            if self.proc.poll() is not None:
                break
        self.proc.kill()
        raise AssertionError(f"proxy {instance} did not start")

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.rest + "/switchyard/v1" + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"content-type": "application/json", "switchyard-admin-key": ADMIN_KEY})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def two_proxies(upstream: Any) -> Iterator[tuple[ProxyProcess, ProxyProcess]]:
    tag = uuid.uuid4().hex[:6]
    first = ProxyProcess(upstream, f"proxy-a-{tag}")
    try:
        second = ProxyProcess(upstream, f"proxy-b-{tag}")
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


def _register(proxy: ProxyProcess, upstream: Any, prefix: str) -> tuple[str, str, str]:
    """An empty source collection behind alias ``<prefix>docs``, bound to model A; model B registered."""
    direct = QdrantClient(url=upstream.rest_url, check_compatibility=False)
    source, alias = f"{prefix}docs_v1", f"{prefix}docs"
    direct.create_collection(source, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    direct.update_collection_aliases([models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=source, alias_name=alias))])
    direct.close()
    a, b = f"hash-a-{prefix}", f"hash-b-{prefix}"
    for model in (a, b):
        spec = json.dumps({"id": model, "provider": "hashing", "model": model, "dimensions": 8})
        subprocess.run([sys.executable, "-m", "switchyard.proxy", "models", "register", model, "--provider", "hashing",
                        "--model", model, "--dimensions", "8", "--url", proxy.rest], check=True,
                       capture_output=True, env={**os.environ, "SPEC": spec, **TOOL_ENV})
    subprocess.run([sys.executable, "-m", "switchyard.proxy", "bind", source, "--model", a, "--url", proxy.rest],
                   check=True, capture_output=True, env={**os.environ, **TOOL_ENV})
    return alias, source, b


def _proxy_states(status: dict[str, Any]) -> dict[str, str]:
    return {p["instance_id"]: p["state"] for p in status["proxies"]}


def test_transition_waits_for_both_and_dead_proxy_ages_out(
    two_proxies: tuple[ProxyProcess, ProxyProcess], upstream: Any, prefix: str
) -> None:
    first, second = two_proxies
    alias, source, model_b = _register(first, upstream, prefix)
    code, planned = first.admin("POST", "/migrations", {"logical": alias, "to_model": model_b})
    assert code == 200, planned
    mid = planned["result"]["migration"]["id"] if "migration" in planned["result"] else planned["result"]["id"]
    target = planned["result"]["migration"]["target"] if "migration" in planned["result"] else planned["result"]["target"]

    code, started = first.admin("POST", f"/migrations/{mid}/transition", {"name": "start"})
    assert code == 200, started
    status = started["result"]
    states = _proxy_states(status)
    assert states.get(first.instance) == "acked" and states.get(second.instance) == "acked", status["proxies"]
    assert status["migration"]["phase"] == "dual_write" and not status["laggards"]

    code, verified = second.admin("POST", f"/migrations/{mid}/verify")  # empty source: clean
    assert code == 200, verified
    code, switched = second.admin("POST", f"/migrations/{mid}/transition", {"name": "switch-reads"})
    assert code == 200, switched
    # both proxies now route reads of the logical name to the target
    for proxy in (first, second):
        req = urllib.request.Request(f"{proxy.rest}/collections/{alias}/points/count", method="POST",
                                     data=b"{}", headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert f"-> {target}" in resp.headers["x-switchyard-route"]

    second.stop(signal.SIGKILL)
    started_wait = time.monotonic()
    code, moved = first.admin("POST", f"/migrations/{mid}/transition", {"name": "switch-writes"})
    waited = time.monotonic() - started_wait
    assert code == 200, moved
    states = _proxy_states(moved["result"])
    assert states[second.instance] == "gone" and states[first.instance] == "acked"
    assert moved["result"]["migration"]["phase"] == "writes_switched"
    assert waited >= 1.0  # it did wait for the dead proxy's heartbeat to age out
    code, done = first.admin("POST", f"/migrations/{mid}/transition", {"name": "complete"})
    assert code == 200 and done["result"]["migration"]["phase"] == "complete", done
