"""SIGTERM stops a command as Ctrl-C does.

`docker stop`, systemd and Kubernetes stop a process with SIGTERM. fertune's long commands (train, search,
video, serve) already stop cleanly on Ctrl-C: a train run keeps its last finished epoch, Ray Tune saves the
experiment state, Ray is shut down in a `finally`. `sigterm_as_interrupt` makes SIGTERM take that same path
by raising SIGINT in its place, so whatever handles Ctrl-C at the time (Python's KeyboardInterrupt, Ray
Tune's graceful stop) handles SIGTERM too.

`ray.init` replaces the handler in the driver: it sets a Python one of its own (`sys.exit(15)` at once, which
skips Tune's last state save), and Ray's C++ core worker then installs its failure-signal handler for SIGTERM
(measured with Ray 2.60 and `fertune serve`: "*** SIGTERM received ***", a stack, and the driver died of
SIGABRT within 4 s without Serve's or Ray's shutdown, Ray's dashboard processes outliving it). Code that
starts Ray therefore does it inside `sigterm_kept()`, which puts the caller's Python handler back in front.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


def _forward(signum, frame) -> None:
    signal.raise_signal(signal.SIGINT)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # Python accepts handlers nowhere else


def sigterm_as_interrupt() -> None:
    """Route SIGTERM to the Ctrl-C path."""
    if _main_thread():
        signal.signal(signal.SIGTERM, _forward)


@contextmanager
def sigterm_kept() -> Iterator[None]:
    """Whatever SIGTERM handler the caller had is in place again after the block (around `ray.init`)."""
    before = signal.getsignal(signal.SIGTERM) if _main_thread() else None
    try:
        yield
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)
