"""Stopping a command on SIGTERM or SIGINT: one line, the conventional exit code, and the run's cleanup done.

``timeout``, ``kubectl delete`` and a KubeRay job stop send SIGTERM; Ctrl-C sends SIGINT. Left to
themselves, both end the driver at once (Ray's driver installs a fatal-signal handler for SIGTERM),
and nothing of the run is cleaned up: the output's lease stays until its TTL and the progress file
says "running". Within ``stop_on_signals`` either signal raises ``Stopped`` in the main thread,
where the job runs, so its ``finally`` blocks run as for any failure: the progress file says
"failed", the lease is released, and the staged work stays for a rerun to resume. The command line
prints ``Stopped`` in one line and exits with 128 + the signal's number (143, 130).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """The command was asked to stop by a signal.

    A BaseException, as KeyboardInterrupt is: an ``except Exception`` in a job (or in Ray) that
    handles a failed task or row must not take a stop request for one.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _stop(signum: int, frame) -> None:
    # Once: a second signal while the run cleans up (releasing its lease) must not cut that short.
    for each in SIGNALS:
        signal.signal(each, _already_stopping)
    raise Stopped(signum)


def _already_stopping(signum: int, frame) -> None:
    logger.warning("%s received while stopping: cleaning up first", signal.Signals(signum).name)


_OWN = (_stop, _already_stopping)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within, SIGTERM and SIGINT raise ``Stopped`` in the main thread; the handlers before are put back after.

    Only the main thread can handle signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {each: signal.getsignal(each) for each in SIGNALS}
    for each in SIGNALS:
        signal.signal(each, _stop)
    try:
        yield
    finally:
        for each, handler in before.items():
            signal.signal(each, handler)


@contextlib.contextmanager
def kept_across_ray_init() -> Iterator[None]:
    """Around ``ray.init``: it sets a SIGTERM handler of its own (``sys.exit(15)``, and its core worker's
    fatal-signal handler beneath it), which would end a run stopped this module's way at once. Handlers
    of ``stop_on_signals`` are put back; any other handler is left as Ray set it. A SIGTERM that Ray's
    handler took while ``ray.init`` ran (a slow start on a busy machine) is ``Stopped`` as any other."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {each: signal.getsignal(each) for each in SIGNALS}
    try:
        yield
    except SystemExit as exit_:
        if exit_.code == signal.SIGTERM and before[signal.SIGTERM] in _OWN:
            before = dict.fromkeys(SIGNALS, _already_stopping)  # put back below: repeats are ignored, as in _stop
            raise Stopped(signal.SIGTERM) from None
        raise
    finally:
        for each, handler in before.items():
            if handler in _OWN:
                signal.signal(each, handler)
