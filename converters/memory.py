"""The process's memory high-water mark: recorded with each component a conversion writes and each bench row."""

from __future__ import annotations

import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far, in MB.

    On Linux this is VmHWM of /proc/self/status: ru_maxrss survives fork and exec, so a child started by a large
    parent would report the parent's size; VmHWM belongs to the process's own memory map. Elsewhere ru_maxrss
    (bytes on macOS, KiB on other systems)."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e6 if sys.platform == "darwin" else rss * 1024 / 1e6


def release() -> None:
    """Give freed memory back to the system (a collection, then glibc's malloc_trim where there is one): a
    converter's tracing leaves gigabytes of freed heap at SD size that would otherwise sit under the runtime's
    compiled copy of the weights."""
    import ctypes
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass
