"""The machine a measurement ran on, recorded beside every wall time and benchmark figure."""
from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model and logical CPU count, for a results JSON."""
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count()}
