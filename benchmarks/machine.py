"""What machine a benchmark ran on: CPU model, cores, memory, load, library versions.

Versions come from package metadata, so recording them imports neither TensorFlow nor DVC.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("tensorflow", "keras", "dvc", "mlflow", "numpy", "pillow", "pandas")


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        return None
    return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        return None
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def filesystem(path: str | Path) -> str | None:
    """The filesystem type holding `path` (ext4, overlay, tmpfs...), from /proc/mounts."""
    target = str(Path(path).resolve())
    best, kind = "", None
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount_point, fs_type, *_ = line.split()
            if (target == mount_point or target.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) > len(best):
                best, kind = mount_point, fs_type
    except OSError:
        return None
    return kind


# The instruction sets the precision figures depend on (bf16: AMX tiles or AVX-512 BF16).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    """Which of ISA_FLAGS this CPU reports in /proc/cpuinfo (empty where it cannot be read)."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return [flag for flag in ISA_FLAGS if flag in flags]


def machine_info() -> dict:
    """A JSON-ready description of this machine and software stack."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": _cpuinfo_field("model name") or platform.processor() or None,
        "cpu_flags": cpu_flags(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_usable_cores": usable,
        "memory_gib": _memory_gib(),
        "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()],
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {package: _version(package) for package in PACKAGES},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(machine_info(), indent=2))
