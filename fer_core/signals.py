"""SIGTERM stops a command as Ctrl-C does.

docker stop, systemd and Kubernetes stop a process with SIGTERM, whose default action ends Python at
once: no `finally`, no Ray or Serve shutdown, Ray's helper processes orphaned. `stop_on_sigterm`
re-raises SIGTERM as SIGINT, so whatever handles Ctrl-C (Python's KeyboardInterrupt, Ray Tune's
graceful stop) handles it too.

`ray.init` replaces that handler in the driver. It sets a Python one of its own, and then Ray's C++ core
worker installs its failure-signal handler for SIGTERM over Python's (measured with Ray 2.60 and
`fertune serve`: SIGTERM printed "*** SIGTERM received ***" with a stack and the driver died of SIGABRT,
exit -6, within 4 s, without Serve's or Ray's shutdown, the dashboard's processes outliving it). A
command that calls `ray.init` therefore calls `stop_on_sigterm()` again right after it, which puts
Python's handler back in front.
"""
from __future__ import annotations

import signal
import threading


def _forward(signum, frame) -> None:
    signal.raise_signal(signal.SIGINT)


def stop_on_sigterm() -> bool:
    """Make SIGTERM raise SIGINT in this process; False (nothing done) off the main thread, where Python
    cannot set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _forward)
    return True
