"""SIGTERM stops a command as Ctrl-C does.

`docker stop`, systemd and Kubernetes stop a process with SIGTERM. fertune's long commands (train, search,
video, serve) already stop cleanly on Ctrl-C: a train run keeps its last finished epoch, Ray Tune saves the
experiment state, Ray is shut down in a `finally`. `sigterm_as_interrupt` makes SIGTERM take that same path
by raising SIGINT in its place, so whatever handles Ctrl-C at the time (Python's KeyboardInterrupt, Ray
Tune's graceful stop) handles SIGTERM too.

`ray.init` installs its own SIGTERM handler (`sys.exit` at once, which skips Tune's last state save), so
commands that start Ray call this again right after `ray.init`.
"""
from __future__ import annotations

import signal
import threading


def _forward(signum, frame) -> None:
    signal.raise_signal(signal.SIGINT)


def sigterm_as_interrupt() -> None:
    """Route SIGTERM to the Ctrl-C path (main thread only: Python accepts handlers nowhere else)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _forward)
