"""What one heavy request costs the proxy: healthz latency and RSS while it is handled.

Starts a key-protected embedded upstream and a real proxy process (``tests/keyed_proxy.py``),
binds a collection to a hashing model, then for each case sends one request from a thread while
the main thread polls ``/switchyard/healthz`` back to back, and reports the request's status and
time, healthz latency (p50 / max) while it was in flight, the proxy's RSS before and after
(``/proc/PID/status``) and how many texts the proxy embedded for it:

* ``10 MB text, keyed``: a query whose inference object carries 10 MiB of text (over the bound);
* ``10 MB text, keyless``: the same without a key (the upstream needs one);
* ``max allowed``: an upsert of 128 inference objects of 8,192 characters (the 1 MiB bound).

Run: ``python bench/request_bounds.py`` (about 20 s).
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from keyed_proxy import KeyedSetup, random_text, raw_rest, start_keyed  # noqa: E402

TEN_MB = 10 * 1024 * 1024
warnings.filterwarnings("ignore", "Api key is used with an insecure connection")


def measure(setup: KeyedSetup, name: str, method: str, path: str, body: bytes, key: str | None) -> dict[str, Any]:
    embedded = setup.metric("switchyard_embedded_texts_total", model=setup.spec.id)
    rss_before = setup.rss_kib()
    outcome: dict[str, Any] = {}

    def send() -> None:
        started = time.perf_counter()
        outcome["status"] = raw_rest(setup, method, path, body, key)[0]
        outcome["seconds"] = time.perf_counter() - started

    worker = threading.Thread(target=send)
    worker.start()
    latencies = []
    while worker.is_alive():
        latencies.append(setup.healthz())
    worker.join()
    return {"case": name, "status": outcome["status"], "seconds": outcome["seconds"],
            "healthz_n": len(latencies),
            "healthz_p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
            "healthz_max_ms": max(latencies) * 1000 if latencies else float("nan"),
            "rss_before": rss_before / 1024, "rss_after": setup.rss_kib() / 1024,
            "embedded": setup.metric("switchyard_embedded_texts_total", model=setup.spec.id) - embedded}


def main() -> None:
    setup = start_keyed()
    try:
        idle = [setup.healthz() for _ in range(50)]
        print(f"healthz idle: p50 {statistics.median(idle) * 1000:.2f} ms, max {max(idle) * 1000:.2f} ms")
        query = f"/collections/{setup.collection}/points/query"
        big = orjson.dumps({"query": {"text": "word " * (TEN_MB // 5), "model": setup.spec.id}, "limit": 3})
        points = [{"id": i, "vector": {"text": random_text(8192, seed=i), "model": setup.spec.id}}
                  for i in range(128)]
        rows = [
            measure(setup, "10 MB text, keyed", "POST", query, big, setup.key),
            measure(setup, "10 MB text, keyless", "POST", query, big, None),
            measure(setup, "max allowed (128 x 8192 chars)", "PUT",
                    f"/collections/{setup.collection}/points?wait=true",
                    orjson.dumps({"points": points}), setup.key),
        ]
        print("| case | status | request s | healthz polls | healthz p50 ms | healthz max ms | "
              "RSS before MiB | RSS after MiB | texts embedded |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['case']} | {r['status']} | {r['seconds']:.3f} | {r['healthz_n']} | "
                  f"{r['healthz_p50_ms']:.2f} | {r['healthz_max_ms']:.2f} | {r['rss_before']:.0f} | "
                  f"{r['rss_after']:.0f} | {r['embedded']:.0f} |")
    finally:
        setup.stop()


if __name__ == "__main__":
    main()
