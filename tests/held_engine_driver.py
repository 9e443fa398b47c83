"""The ``bonito-ray`` command line, with the echo engine held on chosen passages (driven by test_stop_signals.py).

A batch that holds a passage with ``HOLD_MARKER`` waits until the file ``BONITO_RAY_TEST_GATE`` names
exists (at most ``HOLD_SECONDS``): the job stages what it can and is still staging, whatever the
machine's speed, when the test stops it.

    BONITO_RAY_TEST_GATE=PATH python tests/held_engine_driver.py generate ...
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bonito_ray import cli
from bonito_ray.engines import echo

HOLD_MARKER = "HOLD"
GATE_ENV = "BONITO_RAY_TEST_GATE"  # the engine's workers inherit it from this driver's private cluster
HOLD_SECONDS = 600.0

_echo_generations = echo.echo_generations


def held_echo_generations(batch, generator=echo.DEFAULT_GENERATOR):
    """The echo engine, except that a batch holding a marked passage waits for the gate first."""
    if any(HOLD_MARKER in text for text in batch["context"].to_pylist()):
        gate, deadline = Path(os.environ[GATE_ENV]), time.monotonic() + HOLD_SECONDS
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    return _echo_generations(batch, generator)


if __name__ == "__main__":
    echo.echo_generations = held_echo_generations
    sys.exit(cli.main(sys.argv[1:]))
