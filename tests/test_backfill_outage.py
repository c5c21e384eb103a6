"""The backfill daemon rides out an outage, with real processes: the embedded upstream
(``switchyard upstream --path``) is SIGKILLed mid-backfill, stays down ~5 s and comes back on
the same port with the same data; the daemon (a subprocess) waits with back-off, says so in
its log and in ``migrate status``, re-claims its partitions, finishes, and verify is clean. A
refused credential ends the daemon at once, non-zero, with the reason (and not the key).

Every wait is bounded; everything started is stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from switchyard.backfill.pipeline import Copier
from switchyard.backfill.verify import verify
from backfill_helpers import setup_migration
from switchyard.proxy.migration.command import render
from switchyard.proxy.migration.record import Migration
from switchyard.proxy.migration.service import MigrationService
from switchyard.proxy.state.store import StateStore

pytestmark = pytest.mark.embedded_only  # the test stops and restarts the upstream itself

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"switchyard upstream ready http=(?P<host>\S+):(?P<port>\d+) grpc=\S+:(?P<grpc>\d+)")
PROXY_READY = re.compile(r"switchyard proxy ready rest=\S+:(?P<port>\d+) ")
ADMIN_KEY = "outage-admin-key"
#: unique per run: suites running at once on one machine must not share a proxy identity
INSTANCE = f"outage-proxy-{uuid.uuid4().hex[:8]}"
#: processes started as session (and process-group) leaders: stop() kills their whole group
GROUPS: set[int] = set()
START_TIMEOUT = 30.0
N, RATE = 1000, 200.0  # points, throttle (points/s): the copy takes ~5 s, long enough to cut it


def start_upstream(path: Path, port: int = 0, api_key: str | None = None) -> tuple[subprocess.Popen[str], int]:
    """``switchyard upstream`` on 127.0.0.1 ``port`` (0: any); returns the process and its REST port."""
    proc, m = _start_upstream(path, port, api_key)
    return proc, int(m["port"])


def _start_upstream(path: Path, port: int, api_key: str | None) -> tuple[subprocess.Popen[str], re.Match[str]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "switchyard.proxy", "upstream", "--path", str(path), "--http-port", str(port),
           "--grpc-port", "0"] + (["--api-key", api_key] if api_key else [])
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    GROUPS.add(proc.pid)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or []], daemon=True).start()
    try:
        line = lines.get(timeout=START_TIMEOUT)
    except queue.Empty:
        stop(proc)
        raise AssertionError("the upstream printed no ready line") from None
    m = READY.search(line)
    assert m, f"unexpected first line: {line!r}"
    return proc, m


def start_proxy(upstream: re.Match[str], log: Path, port: int = 0) -> tuple[subprocess.Popen[str], int]:
    """``switchyard proxy`` in front of ``upstream`` (its ready line) on 127.0.0.1 ``port``;
    its stderr goes to ``log``."""
    cmd = [sys.executable, "-m", "switchyard.proxy", "proxy", "--upstream-rest-url", f"http://127.0.0.1:{upstream['port']}",
           "--upstream-grpc-address", f"127.0.0.1:{upstream['grpc']}", "--listen-rest", f"127.0.0.1:{port}",
           "--listen-grpc", "127.0.0.1:0", "--instance-id", INSTANCE, "--state-cache-ttl", "0.2",
           "--heartbeat-interval", "0.3", "--drain-seconds", "1", "--spool-dir", str(log.parent / "spool")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SWITCHYARD_ADMIN_KEY": ADMIN_KEY}
    with log.open("a") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=sink, text=True,
                                start_new_session=True)
    GROUPS.add(proc.pid)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or []], daemon=True).start()
    deadline = time.monotonic() + 2 * START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if m := PROXY_READY.search(line):
            return proc, int(m["port"])
    stop(proc)
    raise AssertionError(f"the proxy printed no ready line: {log.read_text()[-2000:]}")


def start_daemon(url: str, mid: str, log: Path, api_key: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}", "SWITCHYARD_ADMIN_KEY": ADMIN_KEY}
    env.pop("SWITCHYARD_API_KEY", None)
    if api_key:
        env["SWITCHYARD_API_KEY"] = api_key  # not on the command line, where `ps` shows it
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "switchyard.proxy", "--log-level", "WARNING", "backfill", mid, "--url", url,
             "--once", "--owner", "rider", "--batch-size", "50", "--concurrency", "1",
             "--lease-ttl", "3", "--retry-base", "0.2", "--retry-max", "1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sink)


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL ``proc``; a server (started in a session of its own) with whatever it started
    (worker processes), so nothing of it keeps the port or its files. The group is signalled
    before the leader is reaped, so its id is still ours."""
    if proc.poll() is None:
        if proc.pid in GROUPS:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=START_TIMEOUT)


async def until(cond: Callable[[], Awaitable[bool]], timeout: float, what: str, seen: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await cond():
                return
        except Exception:  # noqa: BLE001 -- the upstream may be coming back
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last seen: {seen!r})"
        await asyncio.sleep(0.1)


async def copied(store: StateStore, mid: str) -> int:
    return sum(int(e.data.get("copied") or 0) for e in await store.list("lease") if e.key.startswith(mid + "/"))


async def test_daemon_rides_out_an_upstream_restart(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "daemon.log"
    upstream, port = start_upstream(data)
    url = f"http://127.0.0.1:{port}"
    client = AsyncQdrantClient(url=url, check_compatibility=False, timeout=60)
    store = StateStore(client)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        mid = await setup_migration(client, store, "outage_", list(range(N)), throttle=RATE)
        daemon = start_daemon(url, mid, log)
        await until(lambda: _at_least(copied(store, mid), 150), 60, "the backfill to get going")
        cut_at = await copied(store, mid)
        stop(upstream)  # SIGKILL mid-backfill
        await asyncio.sleep(5.0)
        assert daemon.poll() is None, log.read_text()[-2000:]  # it rode out 5 s without its upstream
        upstream, _ = start_upstream(data, port)  # same port, same data

        seen: list[str] = []

        async def said_it_waited() -> bool:
            status = await MigrationService(store, client).status(mid)
            line = [x for x in render(status).splitlines() if "daemon rider" in x]
            seen[:] = line
            return bool(line) and ("recovered after" in line[0] or "waiting (" in line[0])

        await until(said_it_waited, 60, "the daemon's status to say it waited", seen)
        assert "upstream unavailable (" in seen[0], seen
        rc = await asyncio.to_thread(daemon.wait, 120)
        err = log.read_text()
        assert rc == 0, err[-3000:]
        assert re.search(r"waiting: upstream unavailable \(connection (refused|reset)\), retry \d+ in \d+ s", err), err[-3000:]
        m = Migration.from_envelope(await store.require(Migration.KIND, mid))
        assert m.backfill == "done" and cut_at < N
        found, _ = await verify(Copier(client, m, {}, None, None), store, m, resume=False)  # type: ignore[arg-type]
        assert found.clean and found.source == N, found.counts()
        first_wait = next(x for x in err.splitlines() if "waiting: upstream unavailable" in x)
        print(f"cut at {cut_at}/{N} copied; log: {first_wait.split(': ', 2)[-1]}; status: {seen[0].strip()}")
    finally:
        if daemon is not None:
            stop(daemon)
        await client.close()
        stop(upstream)


async def _at_least(value: Awaitable[int], floor: int) -> bool:
    return await value >= floor


async def test_a_refused_credential_ends_the_daemon_with_the_reason(tmp_path: Path) -> None:
    upstream, port = start_upstream(tmp_path / "data", api_key="the-right-key")
    url = f"http://127.0.0.1:{port}"
    client = AsyncQdrantClient(url=url, api_key="the-right-key", check_compatibility=False, timeout=60)
    store = StateStore(client)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        mid = await setup_migration(client, store, "keyed_", list(range(50)))
        log = tmp_path / "daemon.log"
        daemon = start_daemon(url, mid, log, api_key="a-wrong-key")
        rc = await asyncio.to_thread(daemon.wait, 60)
        err = log.read_text()
        assert rc == 1, err[-2000:]
        assert re.search(r"switchyard: backfill stopped: upstream refused the credential \(40[13] ", err), err[-2000:]
        assert "a-wrong-key" not in err and "the-right-key" not in err
        m = Migration.from_envelope(await store.require(Migration.KIND, mid))
        assert m.counter("backfill_done") == 0  # it wrote nothing
    finally:
        if daemon is not None:
            stop(daemon)
        await client.close()
        stop(upstream)


async def test_daemon_rides_out_a_proxy_restart(tmp_path: Path) -> None:
    """The same through a proxy: the daemon talks only to the proxy, which is SIGKILLed for ~5 s
    and restarted on the same port (the upstream stays up)."""
    log = tmp_path / "daemon.log"
    upstream, ready = _start_upstream(tmp_path / "data", 0, None)
    direct = AsyncQdrantClient(url=f"http://127.0.0.1:{ready['port']}", check_compatibility=False, timeout=60)
    store = StateStore(direct)
    proxy: subprocess.Popen[str] | None = None
    daemon: subprocess.Popen[bytes] | None = None
    try:
        mid = await setup_migration(direct, store, "viaproxy_", list(range(N)), throttle=RATE)
        proxy, port = start_proxy(ready, tmp_path / "proxy.log")
        daemon = start_daemon(f"http://127.0.0.1:{port}", mid, log)
        await until(lambda: _at_least(copied(store, mid), 150), 60, "the backfill to get going")
        stop(proxy)  # SIGKILL mid-backfill
        await asyncio.sleep(5.0)
        assert daemon.poll() is None, log.read_text()[-2000:]
        proxy, _ = start_proxy(ready, tmp_path / "proxy.log", port)
        rc = await asyncio.to_thread(daemon.wait, 120)
        err = log.read_text()
        assert rc == 0, err[-3000:]
        assert re.search(r"waiting: upstream unavailable \(connection (refused|reset)\), retry \d+ in \d+ s", err), err[-3000:]
        record = (await store.require("backfill_progress", f"{mid}/rider")).data
        assert record["outage"]["recovered"].startswith("recovered after "), record["outage"]
        m = Migration.from_envelope(await store.require(Migration.KIND, mid))
        found, _ = await verify(Copier(direct, m, {}, None, None), store, m, resume=False)  # type: ignore[arg-type]
        assert found.clean and found.source == N, found.counts()
    finally:
        for proc in (daemon, proxy):
            if proc is not None:
                stop(proc)
        await direct.close()
        stop(upstream)
