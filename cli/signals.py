"""SIGTERM and SIGHUP stop a run as Ctrl-C does: Slurm, Kubernetes and systemd stop jobs with SIGTERM (then
SIGKILL after a grace period), and a closed terminal sends SIGHUP. The first signal raises KeyboardInterrupt
in the main thread, where the run loop marks the run interrupted and lets episodes reach a checkpoint; a
second one ends the process at once."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WORKER_THREADS = ("episode-", "tool-")  # how agent/episodes.py and agent/executors.py name the threads they start


class StopSignals:
    """Which stop signal arrived first (None: none did); the exit code a shell expects for it."""

    def __init__(self) -> None:
        self.received: int | None = None

    @property
    def exit_code(self) -> int:
        return 128 + (self.received or signal.SIGINT)

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            os._exit(128 + signum)  # the second signal: no more waiting for episodes
        self.received = signum
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_signals_as_interrupt() -> Iterator[StopSignals]:
    """While the block runs, each stop signal is handled as above. A signal the process was started with
    ignored stays ignored (nohup, or a background job's SIGINT), as its parent asked."""
    stops = StopSignals()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, stops.handle)
    try:
        yield stops
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_past_running_tools(code: int | str | None) -> None:
    """Ends the process at once, with `code`, when an episode or a tool call is still running in a thread of its
    own (a stop signal left it at its last checkpoint, or a stopped run left it in a tool). Python's own exit
    would end such a thread when it comes back from native code (OpenCV, FFmpeg, an encoder) by an unwind that
    C++ code does not allow: 'FATAL: exception not rethrown' and SIGABRT (-6) instead of the signal's code,
    about one SIGTERM in eight during commits. Ending here leaves what kill -9 leaves, which a resume expects:
    every accepted sample committed, every other episode at its checkpoint. Otherwise it returns."""
    if not any(t.is_alive() and t.name.startswith(WORKER_THREADS) for t in threading.enumerate()):
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if code is None else code if isinstance(code, int) else 1)
