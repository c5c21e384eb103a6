"""Real processes for the schema tests: an upstream (the embedded server on the Edge engine in
its own process, or the real Qdrant of SWITCHYARD_TEST_QDRANT_URL), a Switchyard proxy in front
of it, and ``switchyard schema ...`` run as a subprocess through the proxy.

Each test gets its own revision chain name (``--chain``) and collection prefix, so tests share
one upstream without seeing each other's schema records.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from upstream_process import UpstreamProcess  # type: ignore[import-not-found]

REAL_URL = os.environ.get("SWITCHYARD_TEST_QDRANT_URL")
REAL_GRPC = os.environ.get("SWITCHYARD_TEST_QDRANT_GRPC")


@dataclass
class Stack:
    upstream_url: str
    proxy_url: str


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    from proxy_fixtures import start_proxy  # type: ignore[import-not-found]
    up: UpstreamProcess | None = None
    if REAL_URL:
        url = REAL_URL.rstrip("/")
        grpc = REAL_GRPC or f"{url.split('//')[1].split(':')[0]}:6334"
    else:
        up = UpstreamProcess()
        up.cmd += ["--engine", "edge"]
        up.start()
        url, grpc = up.rest_url, up.grpc_address
    host, _, port = grpc.rpartition(":")
    proxy = start_proxy(url, host, int(port))
    try:
        yield Stack(url, proxy.rest_url)
    finally:
        proxy.proxy.stop()
        if up is not None:
            up.stop()


@dataclass
class Chain:
    """A revisions folder, a chain name and a collection prefix for one test."""

    folder: Path
    name: str
    prefix: str
    stack: Stack

    def write(self, rid: str, parent: str | None, upgrade: str, downgrade: str = "pass",
              message: str = "") -> None:
        body = (f"revision = {rid!r}\nparent = {parent!r}\nmessage = {message or rid!r}\n"
                f"P = {self.prefix!r}\n\n\ndef upgrade(op):\n{textwrap.indent(textwrap.dedent(upgrade).strip(), '    ')}\n"
                f"\n\ndef downgrade(op):\n{textwrap.indent(textwrap.dedent(downgrade).strip(), '    ')}\n")
        (self.folder / f"{rid}.py").write_text(body)

    def args(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "switchyard.proxy", "schema", *extra,
                "--url", self.stack.proxy_url, "--revisions", str(self.folder), "--chain", self.name]

    def run(self, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.args(*extra), capture_output=True, text=True, timeout=timeout,
                              env=_env())

    def popen(self, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.args(*extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=_env(), start_new_session=True)

    def status(self) -> dict[str, Any]:
        import json
        done = self.run("status", "--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SWITCHYARD_SCHEMA_REVISIONS", None)
    env.pop("SWITCHYARD_SCHEMA_CHAIN", None)
    return env


@pytest.fixture
def chain(tmp_path: Path, stack: Stack) -> Chain:
    folder = tmp_path / "qdrant_migrations"
    folder.mkdir()
    tag = uuid.uuid4().hex[:8]
    return Chain(folder, f"t{tag}", f"sc{tag}_", stack)
