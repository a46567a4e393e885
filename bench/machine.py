"""The machine a benchmark ran on, as BENCHMARKS.md names it: CPU model, cores, and the SIMD flags that decide
the training precision (native bf16 or fp32) and OpenCV's kernels."""
from __future__ import annotations

import os
import platform
from pathlib import Path

SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_flags() -> list[str]:
    """Which of SIMD_FLAGS this CPU has."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return [f for f in SIMD_FLAGS if f in flags]


def cpu_description() -> str:
    """E.g. 'AMD EPYC 7B13, 2 cores, avx2'."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.machine())
    return f"{name}, {os.cpu_count()} cores, {' '.join(cpu_flags()) or 'no AVX2'}"
