"""Proxy overhead: direct vs through ``switchyard proxy``, REST and gRPC, in one run.

Cells: upstream (the embedded upstream, and a canned responder showing the proxy's own
ceiling) x call (cheap: collection info; realistic: query, limit 10, 384-d, 10,000 points) x
protocol x concurrency (1, 16) x route (direct, proxy). Per cell: p50/p99 latency, requests
per second and the proxy's CPU per request (utime+stime of the proxy process from
/proc/<pid>/stat over the measured windows; 10 ms tick granularity, and ~4 ms/s of idle
background work, dominate it for the slow embedded-query cells). Ratios are proxy/direct within
the same run; direct and proxy windows alternate so drift on a shared machine hits both.

Every server is its own process; the load generator is another process (raw asyncio HTTP/1.1
keep-alive connections, grpc.aio raw-bytes calls; uvloop), driven over stdin/stdout.

    python bench/proxy_overhead.py            # 2 alternating rounds of 1.5 s per route and cell
    python bench/proxy_overhead.py --quick    # 1 round of 1 s
    python bench/proxy_overhead.py --canned   # canned upstream only, 3 rounds, proxy with
                                              # --workers 1 and --workers 2 in the same run

CPU per request is summed over the proxy's whole process tree (a supervisor and its workers).
With ``--canned`` the per-round CPU median is reported too and the issue-17 targets are judged:
REST pass-through CPU at c=16 <= 70 µs (median of three rounds), and workers 2 vs 1 throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
COLLECTION = "bench"
DIM = 384
POINTS = 10_000
TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- load generator (own process)

class _HttpConn(asyncio.Protocol):
    """One keep-alive connection; ``request()`` resolves with the status when the body is in."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.need = -1
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            low = bytes(self.buf[:end]).lower()
            at = low.find(b"content-length:")
            if at < 0:
                raise RuntimeError("load generator needs Content-Length responses")
            eol = low.find(b"\r\n", at)
            self.need = end + 4 + int(low[at + 15:eol if eol >= 0 else len(low)])
        if len(self.buf) >= self.need and self.waiter is not None:
            status = int(self.buf[9:12])
            del self.buf[:self.need]
            self.need = -1
            waiter, self.waiter = self.waiter, None
            waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))

    def request(self, raw: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter


async def _rest_worker(cmd: dict[str, Any], raw: bytes, deadline: list[float],
                       lat: list[float], errors: list[int]) -> None:
    loop = asyncio.get_running_loop()
    transport, conn = await loop.create_connection(_HttpConn, "127.0.0.1", cmd["port"])
    try:
        while time.perf_counter() < deadline[0]:
            t0 = time.perf_counter()
            status = await conn.request(raw)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
    finally:
        transport.close()


async def _grpc_worker(call: Any, body: bytes, deadline: list[float], lat: list[float],
                       errors: list[int]) -> None:
    while time.perf_counter() < deadline[0]:
        t0 = time.perf_counter()
        try:
            await call(body, timeout=30)
        except Exception:  # noqa: BLE001 - counted, the bench reports errors
            errors.append(1)
        lat.append(time.perf_counter() - t0)


async def run_cell(cmd: dict[str, Any]) -> dict[str, Any]:
    """Warm up, announce the measured window on stdout, measure, return stats."""
    import grpc.aio

    body = base64.b64decode(cmd["body"])
    lat: list[float] = []
    errors: list[int] = []
    deadline = [float("inf")]  # workers run until the measured window's end is set
    channel = None
    if cmd["proto"] == "rest":
        head = (f"{cmd['method']} {cmd['path']} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        raw = head.encode() + body

        def worker() -> Any:
            return _rest_worker(cmd, raw, deadline, lat, errors)
    else:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{cmd['port']}", options=[
            ("grpc.max_receive_message_length", 64 << 20)])
        call = channel.unary_unary(cmd["path"])

        def worker() -> Any:
            return _grpc_worker(call, body, deadline, lat, errors)
    tasks = [asyncio.ensure_future(worker()) for _ in range(cmd["concurrency"])]
    await asyncio.sleep(cmd["warmup"])
    lat.clear()
    errors.clear()
    print(json.dumps({"event": "start"}), flush=True)
    started = time.perf_counter()
    deadline[0] = started + cmd["duration"]
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    if channel is not None:
        await channel.close()
    lat.sort()
    n = len(lat)
    return {"event": "done", "n": n, "errors": len(errors), "rps": n / elapsed,
            "p50": lat[n // 2] * 1e3 if n else 0.0, "p99": lat[min(n - 1, int(n * 0.99))] * 1e3 if n else 0.0}


def loadgen_main() -> None:
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        for line in sys.stdin:
            print(json.dumps(runner.run(run_cell(json.loads(line)))), flush=True)


# ---------------------------------------------------------------- orchestration

@dataclass
class Proc:
    popen: subprocess.Popen[str]
    ports: tuple[int, int]

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()

    def cpu(self) -> float:
        """utime+stime of this process and every live descendant (workers of a supervisor)."""
        total, pending = 0.0, [self.popen.pid]
        while pending:
            pid = pending.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / TICKS
            pending += [int(c) for c in children]
        return total


def spawn(args: list[str], pattern: str) -> Proc:
    popen = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert popen.stdout is not None
    line = popen.stdout.readline()
    match = re.search(pattern, line)
    if not match:
        popen.kill()
        raise SystemExit(f"could not start {args}: {line!r}")
    return Proc(popen, (int(match[1]), int(match[2])))


def start_proxy(rest_port: int, grpc_port: int, workers: int = 1) -> Proc:
    return spawn([PY, "-m", "switchyard.proxy", "proxy", "--upstream-rest-url", f"http://127.0.0.1:{rest_port}",
                  "--upstream-grpc-address", f"127.0.0.1:{grpc_port}", "--listen-rest", "127.0.0.1:0",
                  "--listen-grpc", "127.0.0.1:0", "--log-level", "WARNING", "--workers", str(workers)],
                 r"rest=\S+:(\d+) grpc=\S+:(\d+)")


def seed_and_requests(rest_port: int, grpc_port: int) -> dict[str, dict[str, Any]]:
    """Create the collection; return the request bodies per call, and capture canned replies."""
    import grpc
    import numpy as np
    from qdrant_client import QdrantClient, grpc as qgrpc, models

    client = QdrantClient(url=f"http://127.0.0.1:{rest_port}", grpc_port=grpc_port,
                          prefer_grpc=True, timeout=120, check_compatibility=False)
    if client.collection_exists(COLLECTION):
        client.delete_collection(COLLECTION)
    client.create_collection(COLLECTION, models.VectorParams(size=DIM, distance=models.Distance.COSINE))
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((POINTS, DIM)).astype(np.float32)
    for start in range(0, POINTS, 1000):
        client.upsert(COLLECTION, models.Batch(ids=list(range(start, start + 1000)),
                                               vectors=vectors[start:start + 1000].tolist(),
                                               payloads=[{"doc_id": i} for i in range(start, start + 1000)]))
    client.close()
    query = rng.standard_normal(DIM).astype(np.float32).tolist()
    calls: dict[str, dict[str, tuple[Any, ...]]] = {
        "cheap": {"rest": ("GET", f"/collections/{COLLECTION}", b""),
                  "grpc": ("/qdrant.Collections/Get",
                           qgrpc.GetCollectionInfoRequest(collection_name=COLLECTION).SerializeToString())},
        "query": {"rest": ("POST", f"/collections/{COLLECTION}/points/query",
                           json.dumps({"query": query, "limit": 10, "with_payload": True}).encode()),
                  "grpc": ("/qdrant.Points/Query", qgrpc.QueryPoints(
                      collection_name=COLLECTION, limit=10,
                      with_payload=qgrpc.WithPayloadSelector(enable=True),
                      query=qgrpc.Query(nearest=qgrpc.VectorInput(dense=qgrpc.DenseVector(data=query))),
                  ).SerializeToString())},
    }
    canned: dict[str, Any] = {"rest": {}, "grpc": {}}
    conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=60)
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    for spec in calls.values():
        method, path, body = spec["rest"]
        conn.request(method, path, body=body or None, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        canned["rest"][f"{method} {path}"] = [resp.status, "application/json",
                                              base64.b64encode(resp.read()).decode()]
        gmethod, gbody = spec["grpc"]
        reply = channel.unary_unary(gmethod)(gbody, timeout=60)
        canned["grpc"][gmethod] = base64.b64encode(reply).decode()
    conn.close()
    channel.close()
    return {"calls": calls, "canned": canned}


class LoadGen:
    def __init__(self) -> None:
        self.popen = subprocess.Popen([PY, __file__, "--loadgen"], cwd=ROOT, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})

    def run(self, cmd: dict[str, Any], proxy: Proc | None) -> dict[str, Any]:
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.popen.stdin.write(json.dumps(cmd) + "\n")
        self.popen.stdin.flush()
        assert json.loads(self.popen.stdout.readline())["event"] == "start"
        cpu0 = proxy.cpu() if proxy else 0.0
        result = json.loads(self.popen.stdout.readline())
        cpu1 = proxy.cpu() if proxy else 0.0
        result["cpu"] = cpu1 - cpu0
        return result

    def stop(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        self.popen.wait(10)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    procs: list[Proc] = []
    loadgen: LoadGen | None = None
    rows: list[dict[str, Any]] = []
    try:
        embedded = spawn([PY, "-m", "switchyard.proxy", "upstream", "--http-port", "0", "--grpc-port", "0"],
                         r"http=\S+:(\d+) grpc=\S+:(\d+)")
        procs.append(embedded)
        print(f"seeding {POINTS} points of {DIM}-d ...", flush=True)
        seeded = seed_and_requests(*embedded.ports)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(seeded["canned"], fh)
        canned = spawn([PY, str(ROOT / "bench" / "canned_responder.py"), fh.name,
                        str(embedded.ports[0])], r"rest=(\d+) grpc=(\d+)")
        procs.append(canned)
        loadgen = LoadGen()
        variants = ([("canned", canned, 1), ("canned-w2", canned, 2)] if args.canned
                    else [("embedded", embedded, 1), ("canned", canned, 1)])
        for up_name, upstream, workers in variants:
            proxy = start_proxy(*upstream.ports, workers=workers)
            procs.append(proxy)
            for call_name, spec in seeded["calls"].items():
                for proto in ("rest", "grpc"):
                    for conc in (1, 16):
                        if args.only and not re.search(args.only, f"{up_name}:{call_name}:{proto}:{conc}"):
                            continue
                        row: dict[str, Any] = {"upstream": up_name, "call": call_name, "proto": proto, "conc": conc}
                        runs: dict[str, list[dict[str, Any]]] = {"direct": [], "proxy": []}
                        for _ in range(args.rounds):  # alternate, so drift hits both routes alike
                            for route, target, watched in (("direct", upstream, None),
                                                           ("proxy", proxy, proxy)):
                                port = target.ports[0 if proto == "rest" else 1]
                                method, path, body = (spec["rest"] if proto == "rest"
                                                      else ("POST", spec["grpc"][0], spec["grpc"][1]))
                                cmd = {"proto": proto, "port": port, "method": method, "path": path,
                                       "body": base64.b64encode(body).decode(), "concurrency": conc,
                                       "warmup": args.warmup, "duration": args.duration}
                                runs[route].append(loadgen.run(cmd, watched))
                        row.update({route: combine(results) for route, results in runs.items()})
                        rows.append(row)
                        print(format_row(row), flush=True)
    finally:
        if loadgen is not None:
            loadgen.stop()
        for proc in reversed(procs):
            proc.stop()
    return rows


def combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one route: throughput over the summed windows, median latencies, CPU per call."""
    def median(key: str) -> float:
        values = sorted(r[key] for r in results)
        return float(values[len(values) // 2])

    n = sum(r["n"] for r in results)
    elapsed = sum(r["n"] / r["rps"] for r in results if r["rps"])
    cpu = sum(r["cpu"] for r in results)
    per_round = sorted(r["cpu"] / r["n"] * 1e6 for r in results if r["n"])
    return {"n": n, "rps": n / elapsed if elapsed else 0.0, "p50": median("p50"), "p99": median("p99"),
            "errors": sum(r["errors"] for r in results), "cpu_us": cpu / n * 1e6 if n and cpu else None,
            "cpu_rounds": per_round}


# ---------------------------------------------------------------- report

HEADER = ("| upstream | call | proto | conc | direct rps | proxy rps | ratio | direct p50 ms | "
          "proxy p50 ms | added p50 ms | direct p99 ms | proxy p99 ms | proxy CPU µs/req | "
          "CPU per round min/med/max | errors |")


def format_row(row: dict[str, Any]) -> str:
    d, p = row["direct"], row["proxy"]
    ratio = p["rps"] / d["rps"] if d["rps"] else 0.0
    return (f"| {row['upstream']} | {row['call']} | {row['proto']} | {row['conc']} | {d['rps']:.0f} | "
            f"{p['rps']:.0f} | {ratio:.2f} | {d['p50']:.3f} | {p['p50']:.3f} | {p['p50'] - d['p50']:.3f} | "
            f"{d['p99']:.3f} | {p['p99']:.3f} | {p['cpu_us'] or 0:.0f} | {_rounds(p)} | "
            f"{d['errors'] + p['errors']} |")


def _rounds(p: dict[str, Any]) -> str:
    r = p.get("cpu_rounds") or []
    return f"{r[0]:.0f} / {r[len(r) // 2]:.0f} / {r[-1]:.0f}" if r else "-"


def canned_targets(rows: list[dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """Issue 17: REST pass-through CPU at c=16 (median round) and workers 2 vs 1 throughput."""
    def cell(up: str, call: str, proto: str, conc: int) -> dict[str, Any] | None:
        return next((r for r in rows if (r["upstream"], r["call"], r["proto"], r["conc"])
                     == (up, call, proto, conc)), None)

    out: list[tuple[str, bool | None, str]] = []  # None: reported, not judged
    one = cell("canned", "cheap", "rest", 16)
    if one is not None:
        rounds = one["proxy"]["cpu_rounds"]
        med = rounds[len(rounds) // 2] if rounds else float("inf")
        out.append(("cheap REST c16 proxy CPU <= 70 µs/req (median round)", med <= 70, f"{med:.0f}"))
    for call in ("cheap", "query"):
        a, b = cell("canned", call, "rest", 16), cell("canned-w2", call, "rest", 16)
        if a is not None and b is not None and a["proxy"]["rps"]:
            ratio = b["proxy"]["rps"] / a["proxy"]["rps"]
            out.append((f"{call} REST c16 throughput, workers 2 / workers 1", None, f"{ratio:.2f}"))
    return out


def targets(rows: list[dict[str, Any]]) -> list[tuple[str, bool, str]]:
    """The issue's targets, judged on the embedded upstream (the canned rows show the ceiling)."""
    def cell(call: str, proto: str, conc: int) -> dict[str, Any]:
        return next(r for r in rows if (r["upstream"], r["call"], r["proto"], r["conc"])
                    == ("embedded", call, proto, conc))

    def ratio(r: dict[str, Any]) -> float:
        return r["proxy"]["rps"] / r["direct"]["rps"] if r["direct"]["rps"] else 0.0

    def added(r: dict[str, Any]) -> float:
        return r["proxy"]["p50"] - r["direct"]["p50"]

    out = [("cheap REST c16 throughput >= 0.60x", ratio(cell("cheap", "rest", 16)) >= 0.60),
           ("cheap gRPC c16 throughput >= 0.55x", ratio(cell("cheap", "grpc", 16)) >= 0.55),
           ("cheap REST c1 added p50 <= 0.25 ms", added(cell("cheap", "rest", 1)) <= 0.25),
           ("cheap gRPC c1 added p50 <= 0.6 ms", added(cell("cheap", "grpc", 1)) <= 0.6),
           ("query REST c16 throughput >= 0.90x", ratio(cell("query", "rest", 16)) >= 0.90),
           ("query gRPC c16 throughput >= 0.90x", ratio(cell("query", "grpc", 16)) >= 0.90)]
    values = [ratio(cell("cheap", "rest", 16)), ratio(cell("cheap", "grpc", 16)),
              added(cell("cheap", "rest", 1)), added(cell("cheap", "grpc", 1)),
              ratio(cell("query", "rest", 16)), ratio(cell("query", "grpc", 16))]
    return [(name, ok, f"{value:.3f}") for (name, ok), value in zip(out, values)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s per route and cell instead of 2 of 1.5 s")
    parser.add_argument("--only", metavar="REGEX",
                        help="run only cells whose upstream:call:proto:conc matches, e.g. 'canned:cheap'")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per cell")
    parser.add_argument("--canned", action="store_true",
                        help="only the canned-upstream cells, 3 rounds, proxy --workers 1 and 2")
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        loadgen_main()
        return 0
    args.duration, args.warmup, rounds = (1.0, 0.3, 1) if args.quick else (1.5, 0.3, 3 if args.canned else 2)
    args.rounds = args.rounds or rounds
    started = time.time()
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    rows = measure(args)
    print("\n" + HEADER + "\n" + "|" + "---|" * (HEADER.count("|") - 1))
    for row in rows:
        print(format_row(row))
    print("\ntargets (canned upstream):" if args.canned else "\ntargets (embedded upstream):")
    failed = 0
    judged: list[tuple[str, bool | None, str]] = (
        canned_targets(rows) if args.canned else ([] if args.only else list(targets(rows))))
    for name, ok, value in judged:
        failed += ok is False
        print(f"  {'INFO' if ok is None else 'PASS' if ok else 'FAIL'}  {name}  (measured {value})")
    print(f"\nbench took {time.time() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
