"""What a write-ahead intent costs a mirrored write: ``IntentLog.begin`` + ``clear``.

Run: ``python bench/intents.py [--dir DIR] [--n N]``. Prints the time per write for one writer
at a time and for 32 concurrent writers (group commit: one ``fdatasync`` serves all the lines
written before it began), with and without the sync, and how many syncs ran. DIR defaults to a
temporary directory; pass the real spool directory's file system to measure that disk.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from switchyard.proxy.dataplane.intents import IntentLog


async def _run(directory: str, n: int, fsync: bool, concurrent: int) -> tuple[float, int]:
    log = IntentLog(directory, f"bench-{fsync}-{concurrent}", fsync=fsync)
    log.open()

    async def one(i: int) -> None:
        log.clear(await log.begin("m", [i, i + 1, i + 2], []))

    started = time.perf_counter()
    for k in range(0, n, concurrent):
        await asyncio.gather(*(one(i) for i in range(k, min(n, k + concurrent))))
    elapsed = time.perf_counter() - started
    syncs = log.syncs
    log.close()
    return elapsed / n * 1e6, syncs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir")
    p.add_argument("--n", type=int, default=2000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        for fsync in (True, False):
            for concurrent in (1, 32):
                us, syncs = asyncio.run(_run(d, args.n, fsync, concurrent))
                print(f"fsync={fsync!s:5} writers={concurrent:2}: {us:7.1f} us per write, "
                      f"{syncs} syncs for {args.n} writes")


if __name__ == "__main__":
    main()
