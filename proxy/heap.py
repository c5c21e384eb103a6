"""The proxy's C heap keeps the memory of large bodies for the next ones (glibc ``mallopt``).

A bound 1,024-point upsert is an 8.7 MB body, and the proxy holds a few buffers of that size
for it (the joined request, the spliced copy, the transport's). glibc serves allocations that
large with a fresh ``mmap`` and hands the memory back on ``free``, so every such buffer costs a
page fault per 4 KiB on first touch: measured ~2.5 ms per 8.7 MB buffer on the 2-core
benchmark VM, about a third of a bound REST upsert's proxy CPU (``docs/proxy.md``, write
path). Raising the mmap threshold to 32 MiB (the default ``max_body_size``) and the trim
threshold to 64 MiB makes them come from the heap and stay there for the next request; the
price is up to 64 MiB of freed heap kept by an idle proxy after a burst of large writes.

A ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the environment is the operator's
choice and is left alone; on a C library other than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("switchyard.heap")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


def keep_large_buffers() -> bool:
    """Set the thresholds (module docstring); True when they were set."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc: nothing to tune
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not done:
        log.debug("mallopt refused the heap thresholds; large bodies keep glibc's defaults")
    return done
