"""``--workers N``: N proxy processes sharing the listeners, watched by a supervisor.

One Python process serves on one core (the event loop, the GIL). With ``workers`` > 1 the
``switchyard proxy`` process becomes a supervisor that serves nothing itself:

* It resolves the listen addresses first (port 0 picks one) and keeps them reserved with a
  bound, non-listening ``SO_REUSEPORT`` socket, so every worker binds the same ports (REST and
  gRPC, ``SO_REUSEPORT``) and the kernel spreads new connections over them; a port held by
  another program still fails loudly, here.
* Each worker is a spawned process running the ordinary proxy (:func:`switchyard.proxy.proxy_command.serve_worker`)
  with its own state cache, upstream pools and heartbeat identity (``instance_id`` + ``-wN``).
* Metrics: prometheus-client's multiprocess mode with a temporary directory the supervisor
  creates and removes; ``/switchyard/metrics`` on any worker reports all of them
  (``switchyard_proxy_worker{worker,pid}`` lists the live ones).
* A worker that dies is restarted after a back-off (1 s doubling to 30 s, reset after 60 s of
  life); why it died (exit code or signal) is logged. SIGTERM/SIGINT stop every worker (each
  drains like a single proxy) and the supervisor exits 0.
* The ready line is printed once every worker is ready.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from typing import Any

from switchyard.proxy.config import ProxyConfig, parse_hostport
from switchyard.proxy.errors import ConfigError

log = logging.getLogger("switchyard.supervisor")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
#: A worker that lived this long is healthy again: its next restart waits BACKOFF_FIRST.
BACKOFF_RESET_AFTER = 60.0
READY_TIMEOUT = 120.0


def next_backoff(previous: float, lived: float) -> float:
    """Seconds to wait before restarting a worker that died after ``lived`` seconds (pure)."""
    if lived >= BACKOFF_RESET_AFTER or previous <= 0:
        return BACKOFF_FIRST
    return min(BACKOFF_MAX, previous * 2)


def death_reason(exitcode: int | None) -> str:
    """A readable reason from ``Process.exitcode`` (negative: killed by that signal) (pure)."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


def reserve(listen: str, option: str) -> tuple[socket.socket, str]:
    """Bind (not listen) ``listen`` with SO_REUSEPORT; the concrete ``HOST:PORT`` to share."""
    host, port = parse_hostport(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{option}: cannot listen on {listen}: {exc}") from exc
    bound = sock.getsockname()[1]
    return sock, f"[{host}]:{bound}" if family == socket.AF_INET6 else f"{host}:{bound}"


@dataclass
class _Worker:
    index: int
    process: BaseProcess | None = None
    started: float = 0.0
    backoff: float = 0.0
    restart_at: float | None = None


class Supervisor:
    """Runs and watches the workers; see the module docstring."""

    def __init__(self, config: ProxyConfig, drain_seconds: float) -> None:
        self.config = config
        self.drain_seconds = drain_seconds
        self.count = config.workers
        self._ctx = multiprocessing.get_context("spawn")
        self._workers = [_Worker(i) for i in range(self.count)]
        self._stopping = False
        self._reserved: list[socket.socket] = []
        self._metrics_dir = ""
        self._ready_rx: Any = None
        self._ready_tx: Any = None

    def run(self) -> int:
        """Start, print the ready line, supervise until a signal, stop everything."""
        rest, grpc = self._reserve()
        self._metrics_dir = tempfile.mkdtemp(prefix="switchyard-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir
        self._ready_rx, self._ready_tx = self._ctx.Pipe(duplex=False)
        self.worker_config = replace(self.config, listen_rest=rest, listen_grpc=grpc, workers=1)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        try:
            for worker in self._workers:
                self._start(worker)
            if not self._wait_ready():
                return 1
            print(f"switchyard proxy ready rest={rest} grpc={grpc} "
                  f"upstream={self.config.upstream_rest_url} workers={self.count}", flush=True)
            self._supervise()
            return 0
        finally:
            self._stop_all()
            for sock in self._reserved:
                sock.close()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _reserve(self) -> tuple[str, str]:
        rest_sock, rest = reserve(self.config.listen_rest, "listen_rest")
        self._reserved.append(rest_sock)
        grpc_sock, grpc = reserve(self.config.listen_grpc, "listen_grpc")
        self._reserved.append(grpc_sock)
        return rest, grpc

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stopping = True

    def _start(self, worker: _Worker) -> None:
        from switchyard.proxy.proxy_command import serve_worker

        cfg = replace(self.worker_config, instance_id=f"{self.config.instance_id}-w{worker.index}")
        process = self._ctx.Process(target=serve_worker, name=f"switchyard-worker-{worker.index}",
                                    args=(cfg, self.drain_seconds, worker.index, self._ready_tx))
        process.start()
        worker.process, worker.started, worker.restart_at = process, time.monotonic(), None
        log.info("worker %d started (pid %s)", worker.index, process.pid)

    def _wait_ready(self) -> bool:
        """Every first worker says ready; one that dies first fails the start."""
        pending = {w.index for w in self._workers}
        deadline = time.monotonic() + READY_TIMEOUT
        while pending and not self._stopping and time.monotonic() < deadline:
            if self._ready_rx.poll(0.2):
                pending.discard(int(self._ready_rx.recv()))
            for worker in self._workers:
                if worker.process is not None and not worker.process.is_alive():
                    log.error("worker %d did not start: %s", worker.index,
                              death_reason(worker.process.exitcode))
                    return False
        if pending and not self._stopping:
            log.error("workers %s not ready after %.0f s", sorted(pending), READY_TIMEOUT)
        return not pending

    def _supervise(self) -> None:
        while not self._stopping:
            sentinels = [w.process.sentinel for w in self._workers if w.process is not None]
            multiprocessing.connection.wait(sentinels, timeout=0.5)
            while self._ready_rx.poll():
                self._ready_rx.recv()  # restarted workers report ready too
            now = time.monotonic()
            for worker in self._workers:
                self._check(worker, now)

    def _check(self, worker: _Worker, now: float) -> None:
        process = worker.process
        if process is not None and not process.is_alive() and not self._stopping:
            process.join()
            _mark_dead(process.pid)
            worker.backoff = next_backoff(worker.backoff, now - worker.started)
            worker.restart_at = now + worker.backoff
            worker.process = None
            log.warning("worker %d (pid %s) %s; restarting in %.0f s", worker.index, process.pid,
                        death_reason(process.exitcode), worker.backoff)
        if worker.process is None and worker.restart_at is not None and now >= worker.restart_at:
            self._start(worker)

    def _stop_all(self) -> None:
        """SIGTERM every worker (each drains), wait, then SIGKILL what is left."""
        live = [w.process for w in self._workers if w.process is not None and w.process.is_alive()]
        for process in live:
            process.terminate()
        deadline = time.monotonic() + self.drain_seconds + 15
        for process in live:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join(5)


def _mark_dead(pid: int | None) -> None:
    """Drop a dead worker's live gauges from the shared metrics directory."""
    if pid is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
