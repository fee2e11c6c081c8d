"""Hardware and software fingerprint recorded with every result, plus the
machine's load and the process's peak memory.

A latency number means little without the machine it came from: the JSON
keeps CPU model, cores, the ISA flags llama.cpp's kernels care about, RAM, OS,
Python, the llama.cpp build, the model's sha256 and quantization, and the load
average at start and end (other work on the machine shows up there first).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from pathlib import Path

from thinkling.runtime.hardware import device_facts

# ISA features that change which llama.cpp kernels run (x86 and ARM spellings).
_ISA_PATTERN = re.compile(
    r"^(sse3|ssse3|sse4_1|sse4_2|avx|avx2|fma|f16c|avx_vnni|avx512.*|amx.*"
    r"|neon|asimd|asimdhp|asimddp|dotprod|i8mm|bf16|fphp|sve|sve2|sme)$"
)


def isa_flags(cpuinfo_text: str | None = None) -> list[str]:
    """The relevant ISA flags from ``/proc/cpuinfo`` (``flags`` on x86,
    ``Features`` on ARM), sorted; empty where the file does not exist."""
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo_text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted({f for f in val.split() if _ISA_PATTERN.match(f)})
    return []


_X86_MACHINES = {"x86_64", "amd64", "i386", "i686"}
_ARM_MACHINES = {"aarch64", "arm64", "armv7l", "armv8l"}


def isa_emulation(machine: str | None = None, cpuinfo_text: str | None = None) -> str | None:
    """A sentence when this process's ISA is not its CPU's, else None.

    Under user-mode emulation (qemu-user through binfmt_misc, as
    ``scripts/arm64-check`` runs aarch64 on x86-64) ``platform.machine()`` is
    the emulated ISA while ``/proc/cpuinfo`` still describes the host CPU
    (qemu before 8.2 passes it through); timings measured there are the
    emulator's, not a device's, and the record must say so.
    """
    machine = (machine or platform.machine()).lower()
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    x86_cpu = re.search(r"^flags\s*:.*\bsse2\b", cpuinfo_text, re.M) is not None
    arm_cpu = re.search(r"^(Features\s*:.*\basimd\b|CPU implementer)", cpuinfo_text, re.M) is not None
    if (machine in _ARM_MACHINES and x86_cpu) or (machine in _X86_MACHINES and arm_cpu):
        host = "x86" if x86_cpu else "ARM"
        return (f"{machine} process on an {host} CPU (user-mode emulation, e.g. qemu-user): "
                "timings are the emulator's, not device numbers")
    return None


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("flags", "Features"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        if out.returncode != 0:
            return None
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def llama_build() -> str | None:
    try:
        from thinkling.runtime.backends.llama_cpp import build_info
        return build_info()
    except ImportError:
        return None


def machine_fingerprint() -> dict:
    """Everything about this machine and software stack, without the model."""
    import thinkling

    facts = device_facts()
    try:
        import psutil
        freq = psutil.cpu_freq()
        facts["cpu_max_mhz"] = (freq.max or None) if freq else None  # VMs often report 0
    except (ImportError, OSError, NotImplementedError):
        pass
    facts["virtualized"] = "hypervisor" in _cpu_flags()
    if hasattr(os, "nice"):
        facts["process_nice"] = os.nice(0)  # a negative value means the bench ran ahead of other work

    return {
        **facts,
        "isa_flags": isa_flags(),
        "isa_emulation": isa_emulation(),
        "allowed_cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "os": platform.platform(),
        "kernel": platform.release(),
        "python_impl": platform.python_implementation(),
        "llama_cpp": llama_build(),
        "thinkling": thinkling.__version__,
        "git_commit": _git_commit(),
    }


def model_fingerprint(info: dict, manifest_entry: dict | None = None) -> dict:
    """The model's identity: ``info`` is ``Engine.info().to_dict()``; the sha256
    is computed from the file and checked against the converter's manifest."""
    sha = sha256_file(info["path"])
    expected = (manifest_entry or {}).get("sha256")
    return {
        "name": info.get("name"), "path": info.get("path"), "format": info.get("format"),
        "architecture": info.get("architecture"), "parameters": info.get("parameters"),
        "quantization": info.get("quantization"), "size_bytes": info.get("size_bytes"),
        "sha256": sha, "manifest_sha256_match": None if expected is None else expected == sha,
    }


# --- peak resident memory ------------------------------------------------------

def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) for this process; Linux only.
    Returns False where that is not possible (the peak then covers the whole process)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _proc_status_bytes(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (Linux) in bytes, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss_bytes() -> int | None:
    """Resident set size now (Linux VmRSS; psutil elsewhere when installed)."""
    if (rss := _proc_status_bytes("VmRSS")) is not None:
        return rss
    try:
        import psutil
        return psutil.Process().memory_info().rss
    except (ImportError, OSError):
        return None


def peak_rss_bytes() -> int | None:
    """Peak resident set size since the last reset (Linux VmHWM), else the
    process-lifetime peak from ``getrusage``."""
    if (peak := _proc_status_bytes("VmHWM")) is not None:
        return peak
    try:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if platform.system() == "Darwin" else peak * 1024  # macOS reports bytes
    except (ImportError, OSError):
        return None
