"""Hardware profiles: the engine settings each benchmark profile runs with.

``laptop`` is this machine as it is: all physical cores, no pinning.

``phone`` is an *emulation* of a phone-class budget on whatever machine runs
it. It caps threads, pins the process to that many CPUs and uses a smaller
batch and context, which is how llama.cpp apps are usually configured on
phones. It cannot emulate an ARM core's lower throughput, LPDDR memory
bandwidth, big.LITTLE scheduling or thermal throttling, so a pass here is
necessary, not sufficient: on a real phone, run the same command on the device
(``--profile laptop`` there means "the device as it is"), or point
``--endpoint`` at a phone running ``thinkling serve``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from thinkling.runtime.engine import EngineConfig
from thinkling.runtime.hardware import physical_cores

PROFILE_NAMES = ("laptop", "phone")

# Phone-class assumptions, stated in the output and docs/bench.md.
PHONE_MAX_THREADS = 4  # llama.cpp apps on phones use the 4 big cores at most
PHONE_N_BATCH = 128  # smaller batch: smaller compute buffer, phone RAM budget
PHONE_N_CTX = 2048


@dataclass(frozen=True)
class Profile:
    name: str
    n_threads: int
    n_batch: int
    n_ctx: int
    cpu_affinity: tuple[int, ...] | None
    emulated: bool
    assumptions: list[str] = field(default_factory=list)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(n_ctx=self.n_ctx, n_threads=self.n_threads, n_batch=self.n_batch,
                            queue_size=1, cpu_affinity=self.cpu_affinity)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cpu_affinity"] = list(self.cpu_affinity) if self.cpu_affinity else None
        return d


def laptop_profile(cores: int | None = None) -> Profile:
    """All physical cores, default batch and context, no pinning."""
    cores = cores or physical_cores()
    return Profile(
        name="laptop", n_threads=cores, n_batch=512, n_ctx=4096, cpu_affinity=None, emulated=False,
        assumptions=[f"this machine as it is: {cores} threads (its physical cores), "
                     "n_batch 512, n_ctx 4096, no CPU pinning"],
    )


def phone_profile(cores: int | None = None, cpus: list[int] | None = None) -> Profile:
    """Emulated phone budget: ``min(4, cores // 2)`` threads (at least 1) pinned
    to the highest-numbered allowed CPUs, n_batch 128, n_ctx 2048."""
    cores = cores or physical_cores()
    cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    threads = max(1, min(PHONE_MAX_THREADS, cores // 2))
    # The highest-numbered CPUs: CPU 0 usually takes more interrupts.
    pinned = tuple(cpus[-threads:])
    return Profile(
        name="phone", n_threads=threads, n_batch=PHONE_N_BATCH, n_ctx=PHONE_N_CTX,
        cpu_affinity=pinned, emulated=True,
        assumptions=[
            "EMULATION on this machine, not a phone measurement",
            f"{threads} thread(s) = min({PHONE_MAX_THREADS}, physical cores // 2), "
            f"process pinned to CPU(s) {list(pinned)}",
            f"n_batch {PHONE_N_BATCH}, n_ctx {PHONE_N_CTX} (a phone app's memory budget)",
            "not emulated: ARM core speed and ISA (NEON/dotprod instead of AVX), LPDDR "
            "bandwidth, big.LITTLE scheduling, thermal throttling; a real phone core is "
            "usually slower than a desktop core, so read a pass as necessary, not sufficient",
        ],
    )


def resolve_profiles(choice: str) -> list[Profile]:
    """``laptop``, ``phone`` or ``all`` -> profiles, in run order."""
    if choice == "all":
        return [laptop_profile(), phone_profile()]
    if choice == "laptop":
        return [laptop_profile()]
    if choice == "phone":
        return [phone_profile()]
    raise ValueError(f"unknown profile {choice!r} (laptop, phone or all)")
