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
