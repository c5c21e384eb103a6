"""gRPC pass-through: which grpc.aio server / channel options change the proxy's cost, in one run.

Each variant is the real ``switchyard proxy`` started by this file's ``--serve VARIANT`` launcher,
which changes only the gRPC options (module constants / the channel) before running the CLI:

* ``baseline``: the options the proxy ships with;
* ``latency`` / ``throughput``: ``grpc.optimization_target`` on the server and the channel;
* ``pool4``: four upstream channels, round-robin, instead of one shared channel;
* ``gzip``: gzip compression on the upstream channel;
* ``no-bdp``: ``grpc.http2.bdp_probe`` off on both sides.

Upstream: the canned responder (``bench/canned_responder.py``; a 200-byte reply to a made-up
method), with the embedded upstream behind it for the proxy's own state-store calls. Load: the
raw-bytes ``grpc.aio`` load generator of ``bench/proxy_overhead.py`` (own process). Variants
alternate within each round, in an order rotated every round, so drift hits all alike; CPU is
the proxy process's.

    python bench/grpc_options.py              # 3 rounds of 1.5 s per variant and concurrency
    python bench/grpc_options.py --rounds 1 --duration 1
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

METHOD = "/bench.Echo/Get"
REPLY = bytes(range(200))
VARIANTS = ("baseline", "latency", "throughput", "pool4", "gzip", "no-bdp")


def _patch(variant: str) -> None:
    """Change only the gRPC options of the proxy about to run in this process."""
    import grpc
    import grpc.aio

    from switchyard.proxy.frontend import server as fserver
    from switchyard.proxy.upstream import grpc_client

    extra: tuple[tuple[str, Any], ...] = ()
    if variant in ("latency", "throughput"):
        extra = (("grpc.optimization_target", variant),)
    elif variant == "no-bdp":
        extra = (("grpc.http2.bdp_probe", 0),)
    fserver.SERVER_OPTIONS = (*fserver.SERVER_OPTIONS, *extra)  # type: ignore[misc]
    grpc_client.CHANNEL_OPTIONS = (*grpc_client.CHANNEL_OPTIONS, *extra)  # type: ignore[misc]
    if variant == "gzip":
        original = grpc.aio.insecure_channel

        def gzip_channel(target: str, options: Any = None, compression: Any = None) -> Any:
            return original(target, options=options, compression=grpc.Compression.Gzip)
        grpc.aio.insecure_channel = gzip_channel  # type: ignore[assignment]
    if variant == "pool4":
        base = grpc_client.GrpcUpstream

        class Pooled(base):  # type: ignore[misc, valid-type]
            def __init__(self, address: str, **kwargs: Any) -> None:
                super().__init__(address, **kwargs)
                self._pool = [grpc.aio.insecure_channel(address, options=grpc_client.CHANNEL_OPTIONS)
                              for _ in range(3)] + [self.channel]
                self._next = itertools.cycle(range(4))
                self._calls: dict[tuple[int, str], Any] = {}

            def unary(self, method: str) -> Any:
                i = next(self._next)
                mc = self._calls.get((i, method))
                if mc is None:
                    mc = self._calls[(i, method)] = self._pool[i].unary_unary(method)
                return mc

        import switchyard.proxy.app
        switchyard.proxy.app.GrpcUpstream = Pooled  # type: ignore[misc]


def serve(variant: str, argv: list[str]) -> int:
    _patch(variant)
    from switchyard.proxy.cli import main

    return main(argv)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    import proxy_overhead as po

    procs: list[Any] = []
    loadgen = None
    rows: list[dict[str, Any]] = []
    try:
        embedded = po.spawn([po.PY, "-m", "switchyard.proxy", "upstream", "--http-port", "0", "--grpc-port", "0"],
                            r"http=\S+:(\d+) grpc=\S+:(\d+)")
        procs.append(embedded)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump({"rest": {}, "grpc": {METHOD: base64.b64encode(REPLY).decode()}}, fh)
        canned = po.spawn([po.PY, str(ROOT / "bench" / "canned_responder.py"), fh.name,
                           str(embedded.ports[0])], r"rest=(\d+) grpc=(\d+)")
        procs.append(canned)
        proxies = {}
        for variant in VARIANTS:
            proxies[variant] = po.spawn(
                [po.PY, __file__, "--serve", variant, "--", "proxy",
                 "--upstream-rest-url", f"http://127.0.0.1:{canned.ports[0]}",
                 "--upstream-grpc-address", f"127.0.0.1:{canned.ports[1]}", "--listen-rest", "127.0.0.1:0",
                 "--listen-grpc", "127.0.0.1:0", "--log-level", "WARNING"], r"rest=\S+:(\d+) grpc=\S+:(\d+)")
            procs.append(proxies[variant])
        loadgen = po.LoadGen()
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for round_no in range(args.rounds):
            order = VARIANTS[round_no % len(VARIANTS):] + VARIANTS[:round_no % len(VARIANTS)]
            for conc in (1, 16):
                for variant in ("direct", *order):  # rotated: no variant always runs first
                    target = canned if variant == "direct" else proxies[variant]
                    cmd = {"proto": "grpc", "port": target.ports[1], "method": "POST", "path": METHOD,
                           "body": base64.b64encode(b"\x0a\x05bench").decode(), "concurrency": conc,
                           "warmup": 0.3, "duration": args.duration}
                    watched = None if variant == "direct" else target
                    results.setdefault((variant, conc), []).append(loadgen.run(cmd, watched))
        for (variant, conc), runs in results.items():
            row = {"variant": variant, "conc": conc, **po.combine(runs)}
            rows.append(row)
    finally:
        if loadgen is not None:
            loadgen.stop()
        for proc in reversed(procs):
            proc.stop()
    return rows


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        rest = sys.argv[3:]
        return serve(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.5)
    args = parser.parse_args()
    started = time.time()
    rows = measure(args)
    print("| variant | conc | rps | p50 ms | p99 ms | proxy CPU µs/call (all rounds) | per round min/med/max | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["conc"], r["variant"] != "direct")):
        rounds = r["cpu_rounds"]
        spread = f"{rounds[0]:.0f} / {rounds[len(rounds) // 2]:.0f} / {rounds[-1]:.0f}" if rounds else "-"
        print(f"| {r['variant']} | {r['conc']} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} | "
              f"{r['cpu_us'] or 0:.0f} | {spread} | {r['errors']} |")
    print(f"\nbench took {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
