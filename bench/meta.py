"""The ``meta`` block of results.json: when, what code, which machine and library versions."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

_DISTRIBUTIONS = ("grpcio", "protobuf", "uvloop", "hdrhistogram", "psutil", "matplotlib")


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    """Read-only git queries (rev-parse, status); None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


#: /proc/stat's cpu line, figure by figure (proc(5)): the machine's CPU time by kind since boot.
CPU_KINDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
#: Clock ticks a second, /proc/stat's unit.
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_cpu(stat: str | None = None) -> list[int]:
    """The machine's CPU time by kind since boot, in clock ticks, one figure a kind of
    ``CPU_KINDS``: /proc/stat's cpu line (``stat``: a recorded /proc/stat, else the file now).
    The kernel's network work (the loopback traffic, a flood's connects) shows as softirq, a
    host that runs other guests as steal. Raises OSError without /proc, ValueError if the
    line is not the cpu line."""
    if stat is None:
        with open("/proc/stat") as f:
            stat = f.readline()
    fields = stat.split("\n", 1)[0].split()
    if fields[:1] != ["cpu"] or len(fields) <= len(CPU_KINDS):
        raise ValueError(f"not /proc/stat's cpu line: {' '.join(fields[:3])!r}")
    return [int(x) for x in fields[1 : 1 + len(CPU_KINDS)]]


def machine_seconds(stat: str | None = None) -> dict[str, float]:
    """From :func:`machine_cpu`, in seconds: ``machine``, user + nice + system (what processes
    ran; interrupt time is left out, the loopback TCP traffic of the bench itself lands
    there), and ``steal`` (the hypervisor ran another guest while a vCPU wanted to run);
    empty if /proc/stat cannot be read."""
    try:
        ticks = machine_cpu(stat)
    except (OSError, ValueError):
        return {}
    return {"machine": sum(ticks[:3]) / CLK_TCK, "steal": ticks[7] / CLK_TCK}


def cpu_snapshot() -> dict[str, float]:
    """Machine-wide and own CPU seconds so far (see :func:`background_cpu`)."""
    out: dict[str, float] = {"wall": time.monotonic(), **machine_seconds()}
    t = os.times()
    out["ours"] = t.user + t.system + t.children_user + t.children_system
    return out


def background_cpu(start: dict[str, float], end: dict[str, float]) -> dict[str, float | None]:
    """How busy the machine was with work that is not ours, between two snapshots
    (``wall``, ``ours`` and :func:`machine_seconds`' figures, in seconds).

    ``other_vcpus``: average vCPUs' worth of user+system time used by processes other than
    ours (machine total minus ``ours``: for the run, this process and its reaped children,
    every server and worker being a child, stopped and waited for before the end snapshot;
    for a timing row, bench.endpoints.CpuMeter's server and client). Interrupt time (the
    loopback TCP traffic itself) is left out. ``steal_vcpus``: average vCPUs the hypervisor
    gave other guests while ours wanted to run.
    """
    wall = end["wall"] - start["wall"]
    if wall <= 0 or "machine" not in start or "machine" not in end:
        return {"other_vcpus": None, "steal_vcpus": None}
    other = (end["machine"] - start["machine"]) - (end["ours"] - start["ours"])
    return {
        "other_vcpus": round(max(other, 0.0) / wall, 3),
        "steal_vcpus": round((end["steal"] - start["steal"]) / wall, 3),
    }


def collect(mode: str, command: str) -> dict[str, Any]:
    """Everything about this run that is known before it starts."""
    status = _git("status", "--porcelain")
    return {
        "started_at": utc_now(),
        "mode": mode,
        "command": command,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": platform.python_version(),
        "versions": {dist: _version(dist) for dist in _DISTRIBUTIONS},
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "loadavg_start": loadavg(),
    }


__all__ = [
    "CLK_TCK",
    "CPU_KINDS",
    "background_cpu",
    "collect",
    "cpu_model",
    "cpu_snapshot",
    "loadavg",
    "machine_cpu",
    "machine_seconds",
    "utc_now",
]
