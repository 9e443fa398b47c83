"""When the running command started, on ``time.monotonic``'s clock: a summary's time counts from there, so that
it holds the start-up (Python's imports, the job's checks, Ray's start) as well as the job itself."""

from __future__ import annotations

import os
import time

_IMPORTED = time.monotonic()  # the fallback: the CLI imports this module first thing


def command_started() -> float:
    """The ``time.monotonic()`` value at which this process started (Linux's /proc: the kernel's record, so the
    interpreter's own start counts), else the one at which this module was imported."""
    try:
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        with open("/proc/self/stat", encoding="ascii") as stat:
            # Field 22, start time in clock ticks since boot; fields are counted after the command's
            # parenthesised name, which may itself hold spaces.
            ticks = int(stat.read().rpartition(")")[2].split()[19])
        age = since_boot - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED
    return time.monotonic() - age if 0 <= age else _IMPORTED
