"""Real processes for start-up tests: ``switchyard upstream`` and a ``switchyard proxy`` run to exit.

:class:`UpstreamProcess` starts the embedded upstream in its own process on port 0 (optionally
with an API key) and reads its ports from the ``ready`` line; :func:`run_proxy_until_exit` runs a
proxy in front of it with extra flags and returns ``(returncode, stdout, stderr)``, killing it if
it outlives ``timeout`` (a bounded wait: these tests expect the proxy to give up on its own).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

READY = re.compile(r"switchyard upstream ready http=(\S+):(\d+) grpc=(\S+):(\d+)")


class UpstreamProcess:
    def __init__(self, api_key: str | None = None) -> None:
        cmd = [sys.executable, "-m", "switchyard.proxy", "upstream", "--memory", "--host", "127.0.0.1",
               "--http-port", "0", "--grpc-port", "0"]
        if api_key:
            cmd += ["--api-key", api_key]
        self.cmd = cmd
        self.proc: subprocess.Popen[str] | None = None
        self.rest_url = self.grpc_address = ""

    def start(self) -> UpstreamProcess:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if m := READY.search(line):
                self.rest_url = f"http://{m[1]}:{m[2]}"
                self.grpc_address = f"{m[3]}:{m[4]}"
                return self
            if self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError("embedded upstream did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> UpstreamProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_proxy_until_exit(rest_url: str | UpstreamProcess, flags: list[str], grpc_address: str = "",
                         timeout: float = 90.0) -> tuple[int, str, str]:
    """Run ``switchyard proxy`` in front of ``rest_url`` (or an :class:`UpstreamProcess`)."""
    if isinstance(rest_url, UpstreamProcess):
        rest_url, grpc_address = rest_url.rest_url, rest_url.grpc_address
    cmd = [sys.executable, "-m", "switchyard.proxy", "proxy", "--upstream-rest-url", rest_url,
           "--upstream-grpc-address", grpc_address or "127.0.0.1:1",
           "--listen-rest", "127.0.0.1:0", "--listen-grpc", "127.0.0.1:0",
           "--drain-seconds", "1", *flags]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"proxy did not exit within {timeout:g}s: {exc.stderr!r}") from exc
    return done.returncode, done.stdout, done.stderr
