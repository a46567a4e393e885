"""CPU seconds by process while a block of code runs: where a benchmark's cores went (Linux /proc only).

    with ProcessCPU() as cpu:
        run_the_job()
    cpu.by_role()    # {"ray::IDLE": 95.1, "ray::MapWorker(...)": 11.0, "driver": 6.8, ...}

A thread reads /proc/<pid>/stat for every process twice a second; a process's CPU is its last
reading minus its reading when sampling began (0 for processes started later). Processes that live
less than one interval are missed; a shorter interval would miss fewer but costs the driver CPU (one
reading of Ray's ~60 processes takes 2-4 ms). Ray names its workers by their
current task (`ray::IDLE` between tasks), so a role is the name the process had at its last reading.
"""
from __future__ import annotations

import collections
import os
import threading
from pathlib import Path


def _name(comm: str, args: list[str]) -> str:
    """Ray's title for its workers ("ray::IDLE", "ray::MapWorker(...)"), a Python script's file name, or comm."""
    if args and args[0].startswith("ray::"):
        return args[0]
    script = next((a for a in args[1:] if a.endswith(".py")), None)
    return Path(script).name if comm.startswith("python") and script else comm


def _read(pid: str) -> tuple[str, float, bool] | None:
    """(name, CPU seconds, whether the name came from a live command line) of one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    comm = stat.split("(", 1)[1].rsplit(")", 1)[0]
    args = [a for a in args if a]
    return _name(comm, args), seconds, bool(args)


class ProcessCPU:
    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.start: dict[str, float] = {}
        self.last: dict[str, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, first: bool = False) -> None:
        for pid in os.listdir("/proc"):
            if pid.isdigit() and (reading := _read(pid)):
                name, seconds, live = reading
                if first:
                    self.start[pid] = seconds
                if not live and pid in self.last:  # an exiting process has no command line: keep its name
                    name = self.last[pid][0]
                self.last[pid] = (name, seconds)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "ProcessCPU":
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def by_role(self, top: int = 12) -> dict[str, float]:
        """CPU seconds per process name (this process is "driver"), largest first; the rest as "other"."""
        totals: collections.Counter[str] = collections.Counter()
        for pid, (name, seconds) in self.last.items():
            name = "driver" if pid == str(os.getpid()) else name
            totals[name] += seconds - self.start.get(pid, 0.0)
        ranked = [(name, sec) for name, sec in totals.most_common() if sec >= 0.05]
        out = {name: round(sec, 1) for name, sec in ranked[:top]}
        out["other"] = round(sum(sec for _, sec in ranked[top:]), 1)
        return out
