"""A real subprocess until a block ends, and the first line of its output matching a pattern.

Shared by the tests that start ``switchyard`` commands and wait for a start-up line (the
engine line, the proxy's ready line): bounded waits, and the process is always stopped
(terminate, then kill) when the block ends.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


@contextmanager
def first_match(argv: Sequence[str], pattern: re.Pattern[str], *, stream: str = "stdout",
                env: dict[str, str] | None = None, bound: float = 60.0) -> Iterator[re.Match[str] | None]:
    """Run ``argv``; yield the first line of ``stream`` matching ``pattern`` within ``bound``
    seconds (``None`` when none did, or the process exited first); stop the process after."""
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
    if stream == "stderr":
        pipe = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(list(argv), text=True, env=env, **pipe)  # type: ignore[call-overload]
    found: list[re.Match[str]] = []
    done = threading.Event()

    def read() -> None:
        out = proc.stdout if stream == "stdout" else proc.stderr
        assert out is not None
        for line in iter(out.readline, ""):
            if m := pattern.search(line):
                found.append(m)
                break
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        done.wait(bound)
        yield found[0] if found else None
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        reader.join(5)
