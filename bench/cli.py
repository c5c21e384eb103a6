"""CLI start-up cost: CPU seconds per ``switchyard`` command, before any work is done.

Measures ``switchyard --help``, ``switchyard migrate list`` and ``switchyard migrate status ID``
(the last two against a real ``switchyard up`` on free loopback ports, so they do their one admin
call), each run ``--runs`` times as a fresh process; CPU is the child's user+system time from
``os.wait4``. The issue-16 target is under 0.3 s of CPU for each of the three.

    python bench/cli.py                      # this checkout (python -m switchyard.proxy)
    python bench/cli.py --entry "python -m proxy" --cwd /path/to/old/checkout   # an older layout

``--entry`` and ``--cwd`` let the same bench time an older checkout for a before/after table.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

TARGET_S = 0.3


def cpu_of(cmd: list[str], cwd: str | None) -> tuple[float, int]:
    """(user+system CPU seconds, exit status) of one run of ``cmd``."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, proc.returncode


def start_up(entry: list[str], cwd: str | None) -> tuple[subprocess.Popen[str], str]:
    """``switchyard up`` on port 0; returns the process and its REST URL (from the ready line)."""
    proc = subprocess.Popen([*entry, "up", "--rest-port", "0", "--grpc-port", "0"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"rest=([\d.]+:\d+)", line)
        if match:
            return proc, f"http://{match.group(1)}"
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("switchyard up did not print its ready line")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--entry", default=f"{shlex.quote(sys.executable)} -m switchyard.proxy",
                    help="how to run switchyard (default: this interpreter, -m switchyard.proxy)")
    ap.add_argument("--cwd", help="directory to run it in (an older checkout)")
    args = ap.parse_args()
    entry = shlex.split(args.entry)
    server, url = start_up(entry, args.cwd)
    try:
        cells = {
            "--help": [*entry, "--help"],
            "migrate list": [*entry, "migrate", "list", "--url", url],
            "migrate status": [*entry, "migrate", "status", "no-such-migration", "--url", url],
        }
        print(f"{'command':<16} {'min':>7} {'median':>7} {'max':>7}  CPU seconds, {args.runs} runs; target < {TARGET_S}")
        met = True
        for name, cmd in cells.items():
            runs = [cpu_of(cmd, args.cwd) for _ in range(args.runs)]
            codes = {code for _, code in runs}
            cpu = [c for c, _ in runs]
            med = statistics.median(cpu)
            met = met and med < TARGET_S
            print(f"{name:<16} {min(cpu):7.3f} {med:7.3f} {max(cpu):7.3f}  exit {sorted(codes)}")
        print(f"target (median < {TARGET_S} s for all three): {'met' if met else 'missed'}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
