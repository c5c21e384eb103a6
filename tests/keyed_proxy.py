"""A key-protected embedded upstream and a real proxy process in front of it, with a bound collection.

Shared by ``tests/test_request_bounds.py`` and ``bench/request_bounds.py``. The proxy runs as a
subprocess (``python -m switchyard.proxy proxy``) so its RSS can be read from ``/proc/PID/status``; it gets
its own state-store key through the environment, never on the command line.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import re
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from switchyard.proxy.embedded.auth import ApiKeys
from switchyard.proxy.embedded.server import BackgroundUpstream
from switchyard.proxy.modelspec import ModelSpec
from switchyard.proxy.registry import bind, register_model
from switchyard.proxy.state.records import Binding
from switchyard.proxy.state.store import StateStore

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"switchyard proxy ready rest=(\S+) grpc=(\S+)")


@dataclass
class KeyedSetup:
    upstream: BackgroundUpstream
    proc: subprocess.Popen[str]
    rest_url: str
    grpc_port: int
    key: str
    read_only_key: str
    collection: str
    spec: ModelSpec

    def client(self, key: str | None, grpc: bool = False, direct: bool = False, **kw: Any) -> QdrantClient:
        url = self.upstream.rest_url if direct else self.rest_url
        port = self.upstream.grpc_port if direct else self.grpc_port
        return QdrantClient(url=url, grpc_port=port, prefer_grpc=grpc, api_key=key, https=False,
                            check_compatibility=False, cloud_inference=True, timeout=120, **kw)

    def rss_kib(self) -> int:
        """The proxy process's resident set (VmRSS), KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def metric(self, name: str, **labels: str) -> float:
        """A sample's value from the proxy's ``/switchyard/metrics`` (0 when absent)."""
        with urllib.request.urlopen(self.rest_url + "/switchyard/metrics", timeout=10) as resp:
            text = resp.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def healthz(self, timeout: float = 30.0) -> float:
        """Seconds ``/switchyard/healthz`` took to answer 200."""
        started = time.perf_counter()
        with urllib.request.urlopen(self.rest_url + "/switchyard/healthz", timeout=timeout) as resp:
            assert resp.status == 200
            resp.read()
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.upstream.stop()


@functools.lru_cache(maxsize=1)
def _vocabulary() -> tuple[str, ...]:
    """50,000 random lower-case words, made once (each text drew its own: 128 texts cost ~36 s)."""
    rnd = random.Random(0)
    return tuple("".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(3, 9))) for _ in range(50_000))


def random_text(chars: int, seed: int = 0) -> str:
    """``chars`` characters of random lower-case words (few repeats: no cache makes them cheap)."""
    rnd = random.Random(seed)
    vocabulary = _vocabulary()
    words: list[str] = []
    size = 0
    while size < chars:
        word = rnd.choice(vocabulary)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:chars].ljust(chars, "x")


def start_keyed(extra_args: tuple[str, ...] = ()) -> KeyedSetup:
    """Start the keyed upstream, bind a collection to a hashing model, start the proxy process."""
    key, ro = "sk-" + uuid.uuid4().hex, "ro-" + uuid.uuid4().hex
    upstream = BackgroundUpstream(keys=ApiKeys(api_key=key, read_only_api_key=ro))
    upstream.start()
    tag = uuid.uuid4().hex[:8]
    spec = ModelSpec(id=f"bounds-{tag}", provider="hashing", model=f"bounds-{tag}", dimensions=16)
    collection = f"bounds_{tag}"
    try:
        asyncio.run(_bind(upstream.rest_url, key, spec, collection))
        proc = _spawn(upstream, key, extra_args)
    except BaseException:
        upstream.stop()
        raise
    setup = KeyedSetup(upstream, proc, *_ready(proc), key, ro, collection, spec)
    try:
        _wait_bound(setup)
    except BaseException:
        setup.stop()
        raise
    return setup


async def _bind(url: str, key: str, spec: ModelSpec, collection: str) -> None:
    client = AsyncQdrantClient(url=url, api_key=key, https=False, check_compatibility=False)
    try:
        await client.create_collection(collection, vectors_config=spec.vector_params())
        store = StateStore(client)
        await register_model(store, spec)
        await bind(store, client, Binding(collection, spec.id))
    finally:
        await client.close()


def _spawn(upstream: BackgroundUpstream, key: str, extra: tuple[str, ...]) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "switchyard.proxy", "proxy",
           "--upstream-rest-url", upstream.rest_url,
           "--upstream-grpc-address", upstream.grpc_address,
           "--listen-rest", "127.0.0.1:0", "--listen-grpc", "127.0.0.1:0",
           "--state-cache-ttl", "0.2", "--heartbeat-interval", "0.3", "--heartbeat-ttl", "3",
           "--max-active-migrations", "1000", "--drain-seconds", "1", *extra]
    env = {**os.environ, "SWITCHYARD_UPSTREAM_API_KEY": key}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _ready(proc: subprocess.Popen[str]) -> tuple[str, int]:
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if m := READY.search(line):
            return "http://" + m[1], int(m[2].rpartition(":")[2])
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("proxy did not start")


def _wait_bound(setup: KeyedSetup) -> None:
    """Until the proxy resolves an inference query on the collection (its snapshot has the binding)."""
    client = setup.client(setup.key)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                client.query_points(setup.collection, query=models.Document(text="ready", model=setup.spec.id), limit=1)
                return
            except Exception:  # noqa: BLE001 - not bound yet: the upstream itself refuses inference
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        client.close()


def raw_rest(setup: KeyedSetup, method: str, path: str, body: bytes, key: str | None,
             direct: bool = False) -> tuple[int, bytes]:
    """One REST call with urllib: (status, body), errors included."""
    base = setup.upstream.rest_url if direct else setup.rest_url
    headers = {"content-type": "application/json", **({"api-key": key} if key else {})}
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
