"""``switchyard proxy --workers 2``: real processes sharing the ports, a supervisor restarting them.

Kill -9 one worker: the supervisor logs why and restarts it, requests keep being answered by
the other one meanwhile, and ``/switchyard/metrics`` (any worker) covers every worker's calls.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchyard.proxy.supervisor import death_reason, next_backoff

ROOT = Path(__file__).resolve().parent.parent
WORKER_LINE = re.compile(r'^switchyard_proxy_worker\{pid="(\d+)",worker="(\d+)"\} 1\.0$', re.MULTILINE)
PASSTHROUGH_OR_INTERCEPTED = re.compile(r'^switchyard_proxy_requests_total\{path="\w+",protocol="rest"\} ([\d.]+)$',
                                        re.MULTILINE)


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a new connection each time:
    try:                                                                 # the kernel picks the worker
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _workers(port: int) -> dict[str, int]:
    """worker index -> pid of the live workers, from the metrics endpoint."""
    _, body = _get(port, "/switchyard/metrics")
    return {index: int(pid) for pid, index in WORKER_LINE.findall(body.decode())}


def _rest_calls(port: int) -> float:
    _, body = _get(port, "/switchyard/metrics")
    return sum(float(v) for v in PASSTHROUGH_OR_INTERCEPTED.findall(body.decode()))


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def supervisor(upstream: object) -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    up = upstream
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchyard.proxy", "proxy", "--upstream-rest-url", up.rest_url,  # type: ignore[attr-defined]
         "--upstream-grpc-address", f"{up.grpc_host}:{up.grpc_port}",  # type: ignore[attr-defined]
         "--listen-rest", "127.0.0.1:0", "--listen-grpc", "127.0.0.1:0", "--workers", "2",
         "--drain-seconds", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    log: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        line = proc.stdout.readline()
        match = re.search(r"switchyard proxy ready rest=\S+:(\d+) grpc=\S+:(\d+) .*workers=2", line)
        assert match, (line, log)
        yield proc, int(match[1]), log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_killed_worker_is_restarted_and_metrics_cover_all(
        supervisor: tuple[subprocess.Popen[str], int, list[str]]) -> None:
    proc, port, log = supervisor
    _wait(lambda: len(_workers(port)) == 2, 20, "two live workers in the metrics")
    before = _workers(port)
    assert set(before) == {"0", "1"} and len(set(before.values())) == 2

    answered = 0
    for _ in range(20):
        status, _ = _get(port, "/collections")
        assert status == 200
        answered += 1

    victim = before["1"]
    os.kill(victim, signal.SIGKILL)
    # reaped by the supervisor: then every thread is gone and its listening sockets are closed
    # (a zombie leader can still have threads holding them)
    _wait(lambda: not Path(f"/proc/{victim}").exists(), 10, "the killed worker to be reaped")
    for _ in range(20):  # the surviving worker answers while the other one restarts
        status, _ = _get(port, "/collections")
        assert status == 200
        answered += 1

    _wait(lambda: set(_workers(port)) == {"0", "1"} and _workers(port)["1"] != victim, 60,
          "worker 1 restarted with a new pid")
    after = _workers(port)
    assert after["0"] == before["0"]
    assert any("worker 1" in line and "SIGKILL" in line and "restarting" in line for line in log), log
    for _ in range(10):
        status, _ = _get(port, "/collections")
        assert status == 200
        answered += 1
    # counters of every worker, the killed one included, are summed by any worker's endpoint
    assert _rest_calls(port) >= answered
    assert proc.poll() is None


@pytest.mark.parametrize(("previous", "lived", "want"), [
    (0.0, 0.5, 1.0), (1.0, 0.5, 2.0), (16.0, 3.0, 30.0), (30.0, 1.0, 30.0), (8.0, 120.0, 1.0)])
def test_restart_backoff(previous: float, lived: float, want: float) -> None:
    assert next_backoff(previous, lived) == want


def test_death_reason() -> None:
    assert death_reason(-9) == "killed by signal SIGKILL"
    assert death_reason(3) == "exited with code 3"
    assert death_reason(None) == "still running"
