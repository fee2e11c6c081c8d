"""Which CPUs are the big ones on a big.LITTLE phone (standard library only).

Phone SoCs mix a slow efficiency cluster with faster performance cores. Decode
speed follows the slowest thread, so inference threads belong on the fast cores
only. The clusters are told apart by each CPU's maximum frequency in sysfs.
"""

from __future__ import annotations

import os
from pathlib import Path

SYSFS_CPU = "/sys/devices/system/cpu"


def max_freqs(sysfs: str = SYSFS_CPU) -> dict[int, int]:
    """``{cpu: cpuinfo_max_freq in kHz}`` for every CPU that reports one."""
    out: dict[int, int] = {}
    root = Path(sysfs)
    try:
        dirs = list(root.glob("cpu[0-9]*"))
    except OSError:
        return out
    for d in dirs:
        try:
            cpu = int(d.name[3:])
            out[cpu] = int((d / "cpufreq" / "cpuinfo_max_freq").read_text().strip())
        except (OSError, ValueError):
            continue
    return out


def big_cores(sysfs: str = SYSFS_CPU, allowed: set[int] | None = None) -> list[int] | None:
    """CPUs faster than the slowest cluster, limited to those this process may
    run on; ``None`` when the cores are all alike or sysfs says nothing (then
    pinning would gain nothing)."""
    freqs = max_freqs(sysfs)
    if allowed is None and hasattr(os, "sched_getaffinity"):
        allowed = os.sched_getaffinity(0)  # Android cpusets may fence an app off some cores
    if allowed is not None:
        freqs = {c: f for c, f in freqs.items() if c in allowed}
    if len(set(freqs.values())) < 2:
        return None
    slowest = min(freqs.values())
    return sorted(c for c, f in freqs.items() if f > slowest)
