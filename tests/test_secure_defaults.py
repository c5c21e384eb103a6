"""Secure defaults on real processes: ``switchyard up`` with a keyed embedded upstream.

Issue 11, items 1 and 12, reproduced and now passing:

- ``switchyard up`` listens on 127.0.0.1 only: every listening socket the process owns (read from
  ``/proc/PID/fd`` and ``/proc/net/tcp{,6}``) is on loopback, and its ports answer.
- The admin API without an admin key answers a loopback caller (REST and gRPC). No non-loopback
  peer exists on this machine (127.0.0.0/8 is all loopback), so the refusal of others is shown
  by the documented ``--admin-trust-loopback false`` (the same branch of the same verdict as a
  remote peer, see ``tests/test_admin_access.py``): keyless REST and gRPC calls, ``List`` and
  the ``Watch`` stream included, get 403 / ``PERMISSION_DENIED`` saying how to open the API, and
  a keyless plan creates nothing in the key-protected upstream; health and metrics stay open.
- Keys from files (``--api-key-file``, ``--admin-key-file``, the CLI's ``--admin-key-file`` and
  ``SWITCHYARD_API_KEY_FILE``) work, and neither key appears in the process's command line or
  environment, its DEBUG logs, the CLI's status output or the state store.
- An unknown ``SWITCHYARD_*`` variable is reported at start-up by name with the likely one.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from qdrant_client import QdrantClient, models

from switchyard.proxy._gen.switchyard.v1 import admin_pb2 as pb
from switchyard.proxy._gen.switchyard.v1 import admin_pb2_grpc as pb_grpc
from switchyard.proxy.admin.access import is_loopback

pytestmark = pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
READY = re.compile(r"switchyard proxy ready rest=(\S+):(\d+) grpc=(\S+):(\d+)")
UPSTREAM_READY = re.compile(r"switchyard upstream ready http=(\S+):(\d+) grpc=(\S+):(\d+)")
UPSTREAM_KEY = "up-" + uuid.uuid4().hex
ADMIN_KEY = "adm-" + uuid.uuid4().hex


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    env.update(extra)
    return env


def _key_file(path: Path, key: str) -> Path:
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


class Spawned:
    """A ``python -m switchyard.proxy ...`` subprocess, started and waited for until ``ready`` matches."""

    def __init__(self, tmp: Path, name: str, argv: list[str], ready: re.Pattern[str]) -> None:
        self.stderr_path = tmp / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "w")
        # a misspelt variable, as the old docker-compose.yml had: reported, never read
        env = _clean_env(SWITCHYARD_REST_LISTEN="0.0.0.0:9")
        self.proc = subprocess.Popen([sys.executable, "-m", "switchyard.proxy", *argv], stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, env=env)
        assert self.proc.stdout is not None
        self.stdout_lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            self.stdout_lines.append(line)
            if m := ready.search(line):
                self.match = m
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"{name} did not start: {self.stderr_path.read_text()[-2000:]}")

    def logs(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text() + "".join(self.stdout_lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()


class UpProcess:
    """``switchyard up`` on port 0 with the embedded upstream keyed from a file; or, with
    ``separate``, ``switchyard upstream`` and ``switchyard proxy`` in front of it (so the CLI
    can reach the state store on the upstream directly)."""

    def __init__(self, tmp: Path, *extra: str, admin_key: str | None = None, separate: bool = False) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.key_file = _key_file(tmp / "upstream.key", UPSTREAM_KEY)
        common = ["--drain-seconds", "1", "--state-cache-ttl", "0.2", *extra]
        if admin_key is not None:
            self.admin_file = _key_file(tmp / "admin.key", admin_key)
            common += ["--admin-key-file", str(self.admin_file)]
        self.parts: list[Spawned] = []
        self.upstream_url = ""
        if separate:
            upstream = Spawned(tmp, "upstream", [
                "--log-level", "DEBUG", "upstream", "--memory", "--http-port", "0", "--grpc-port", "0",
                "--api-key-file", str(self.key_file)], UPSTREAM_READY)
            self.parts.append(upstream)
            self.upstream_url = f"http://{upstream.match[1]}:{upstream.match[2]}"
            argv = ["--log-level", "DEBUG", "proxy", "--listen-rest", "127.0.0.1:0", "--listen-grpc",
                    "127.0.0.1:0", "--upstream-rest-url", self.upstream_url,
                    "--upstream-grpc-address", f"{upstream.match[3]}:{upstream.match[4]}",
                    "--upstream-api-key-file", str(self.key_file), *common]
        else:
            argv = ["--log-level", "DEBUG", "up", "--memory", "--rest-port", "0", "--grpc-port", "0",
                    "--api-key-file", str(self.key_file), *common]
        try:
            self.main = Spawned(tmp, "proxy", argv, READY)
        except BaseException:
            self.stop()
            raise
        self.parts.append(self.main)
        self.proc = self.main.proc
        m = self.main.match
        self.rest_host, self.rest_port, self.grpc_host, self.grpc_port = m[1], int(m[2]), m[3], int(m[4])

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def http(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.rest + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"content-type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw.startswith(b"{") else raw.decode()
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def client(self, **kwargs: Any) -> QdrantClient:
        return QdrantClient(url=self.rest, grpc_port=self.grpc_port, api_key=UPSTREAM_KEY,
                            check_compatibility=False, **kwargs)

    def admin_stub(self) -> tuple[grpc.Channel, pb_grpc.AdminStub]:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        return channel, pb_grpc.AdminStub(channel)

    def logs(self) -> str:
        return "".join(part.logs() for part in self.parts)

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()


@contextmanager
def running(factory: pytest.TempPathFactory, name: str, *extra: str, **kwargs: Any) -> Iterator[UpProcess]:
    up = UpProcess(factory.mktemp(name), *extra, **kwargs)
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def open_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """Defaults: no admin key, loopback trusted."""
    with running(tmp_path_factory, "up-default") as up:
        yield up


@pytest.fixture(scope="module")
def closed_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """No admin key and loopback not trusted: every caller is one the API refuses."""
    with running(tmp_path_factory, "up-closed", "--admin-trust-loopback", "false") as up:
        yield up


@pytest.fixture(scope="module")
def keyed_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """An admin key from a file; upstream and proxy as separate processes."""
    with running(tmp_path_factory, "up-keyed", admin_key=ADMIN_KEY, separate=True) as up:
        yield up


# -- item 12: `switchyard up` listens on loopback only

def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc prints each 32-bit word in host (little-endian) order
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            address = socket.inet_ntop(socket.AF_INET if width == 4 else socket.AF_INET6, packed)
            found.append((address, int(hex_port, 16)))
    return found


def test_up_listens_on_loopback_only(open_up: UpProcess) -> None:
    assert (open_up.rest_host, open_up.grpc_host) == ("127.0.0.1", "127.0.0.1")
    listening = listening_addresses(open_up.proc.pid)
    ports = {port for _, port in listening}
    # the proxy's two listeners and the embedded upstream's two
    assert {open_up.rest_port, open_up.grpc_port} <= ports and len(ports) >= 4, listening
    # gRPC binds 127.0.0.1 on a dual-stack socket: ::ffff:127.0.0.1, loopback too
    assert all(is_loopback(addr) for addr, _ in listening), listening
    assert not any(ipaddress.ip_address(addr).is_unspecified for addr, _ in listening)
    for prefer_grpc in (False, True):  # the ports answer, through the proxy to the keyed upstream
        with closing(open_up.client(prefer_grpc=prefer_grpc)) as client:
            assert client.get_collections() is not None


def test_unknown_switchyard_variable_is_reported_at_start_up(open_up: UpProcess) -> None:
    assert ("unknown environment variable SWITCHYARD_REST_LISTEN "
            "(did you mean SWITCHYARD_LISTEN_REST?)") in open_up.logs()
    assert "0.0.0.0:9" not in open_up.logs()  # names only, and the variable was not used


# -- item 1: the admin API is closed by default

def test_keyless_loopback_caller_is_served(open_up: UpProcess) -> None:
    status, body = open_up.http("GET", "/switchyard/v1/migrations")
    assert status == 200 and body["status"] == "ok"
    # the peer is the socket's: headers a client writes cannot move it (either way)
    spoofed = {"x-switchyard-peer": "10.0.0.5", "x-forwarded-for": "10.0.0.5", "x-real-ip": "10.0.0.5"}
    assert open_up.http("GET", "/switchyard/v1/migrations", headers=spoofed)[0] == 200
    channel, stub = open_up.admin_stub()
    with channel:
        assert "migrations" in stub.List(pb.Empty(), timeout=30).result


def test_keyless_caller_is_refused_when_not_trusted(closed_up: UpProcess) -> None:
    with closing(closed_up.client()) as client:
        before = {c.name for c in client.get_collections().collections}
        client.create_collection("docs_src", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    for method, path, body in (("GET", "/switchyard/v1/migrations", None),
                               ("GET", "/switchyard/v1/models", None),
                               ("POST", "/switchyard/v1/migrations",
                                {"logical": "docs_src", "to_model": "b", "target": "docs_dst"}),
                               ("GET", "/switchyard/v1/migrations/x/watch", None),
                               ("POST", "/switchyard/v1/migrations/x/throttle", {"points_per_second": 1})):
        # a forwarded-for header claiming loopback changes nothing: the peer is the socket's
        status, reply = closed_up.http(method, path, body, {"x-forwarded-for": "127.0.0.1",
                                                            "api-key": UPSTREAM_KEY})
        assert status == 403, (path, reply)
        assert set(reply) == {"status", "time"} and "--admin-key-file" in reply["status"]["error"]
    with closing(closed_up.client()) as client:
        after = {c.name for c in client.get_collections().collections}
    assert after - before == {"docs_src"}  # the refused plan created no target
    channel, stub = closed_up.admin_stub()
    with channel:
        for call in (lambda: stub.List(pb.Empty(), timeout=30),
                     lambda: stub.Plan(pb.PlanRequest(logical="docs_src", to_model="b"), timeout=30),
                     lambda: next(iter(stub.Watch(pb.WatchRequest(id="x"), timeout=30)))):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "--admin-key" in (err.value.details() or "")
    for path in ("/switchyard/healthz", "/switchyard/metrics"):  # stay open
        assert closed_up.http("GET", path)[0] == 200
    assert closed_up.http("GET", "/switchyard/readyz")[0] not in (401, 403)


def test_admin_key_from_a_file(keyed_up: UpProcess) -> None:
    assert keyed_up.http("GET", "/switchyard/v1/migrations")[0] == 401
    assert keyed_up.http("GET", "/switchyard/v1/migrations", headers={"switchyard-admin-key": "nope"})[0] == 401
    status, _ = keyed_up.http("GET", "/switchyard/v1/migrations", headers={"switchyard-admin-key": ADMIN_KEY})
    assert status == 200
    channel, stub = keyed_up.admin_stub()
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            stub.List(pb.Empty(), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub.List(pb.Empty(), timeout=30, metadata=(("switchyard-admin-key", ADMIN_KEY),))


def _cli(url: str, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchyard.proxy", *argv, "--url", url], capture_output=True,
                          text=True, timeout=120, env=_clean_env(**env))


def test_no_secret_in_listings_logs_status_or_state(keyed_up: UpProcess, tmp_path: Path) -> None:
    key_env = {"SWITCHYARD_API_KEY_FILE": str(keyed_up.key_file)}
    for argv in (("models", "register", "a", "--provider", "hashing", "--model", "h-a", "--dimensions", "8"),
                 ("models", "register", "b", "--provider", "hashing", "--model", "h-b", "--dimensions", "8")):
        done = _cli(keyed_up.upstream_url, *argv, **key_env)
        assert done.returncode == 0, done.stderr
    with closing(keyed_up.client()) as client:
        client.create_collection("leak_src", vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    done = _cli(keyed_up.upstream_url, "bind", "leak_src", "--model", "a", **key_env)
    assert done.returncode == 0, done.stderr
    outputs = []
    admin_calls: tuple[tuple[str, ...], ...] = (
        ("migrate", "plan", "leak_src", "--to-model", "b", "--target", "leak_dst"), ("migrate", "list"))
    for call in admin_calls:
        done = _cli(keyed_up.rest, *call, "--admin-key-file", str(keyed_up.admin_file), "--json")
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    mid = json.loads(outputs[0])["migration"]["id"]
    done = _cli(keyed_up.rest, "migrate", "status", mid, SWITCHYARD_ADMIN_KEY_FILE=str(keyed_up.admin_file))
    assert done.returncode == 0 and mid in done.stdout, done.stderr
    outputs.append(done.stdout + done.stderr)
    with closing(QdrantClient(url=keyed_up.upstream_url, api_key=UPSTREAM_KEY, check_compatibility=False)) as client:
        state = [p.payload for p in client.scroll("_switchyard", limit=10_000)[0]]
        assert state, "the state store holds the models, binding and migration"
    listing = b"".join(Path(f"/proc/{part.proc.pid}/{what}").read_bytes()
                       for part in keyed_up.parts for what in ("cmdline", "environ"))
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    for where, text in (("logs", keyed_up.logs()), ("cli output", "\n".join(outputs)),
                        ("state store", json.dumps(state)), ("cmdline/environ", listing.decode(errors="replace")),
                        ("ps", ps)):
        for secret in (UPSTREAM_KEY, ADMIN_KEY):
            assert secret not in text, f"a key reached the {where}"
    assert "DEBUG" in keyed_up.logs()  # the logs checked were the verbose ones
