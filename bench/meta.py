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


def cpu_snapshot() -> dict[str, float]:
    """Machine-wide and own CPU seconds so far (see :func:`background_cpu`)."""
    out: dict[str, float] = {"wall": time.monotonic()}
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
        user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, fields)
        hz = os.sysconf("SC_CLK_TCK")
        out["machine"] = (user + nice + system) / hz
        out["steal"] = steal / hz
    except (OSError, ValueError):
        pass
    t = os.times()
    out["ours"] = t.user + t.system + t.children_user + t.children_system
    return out


def background_cpu(start: dict[str, float], end: dict[str, float]) -> dict[str, float | None]:
    """How busy the machine was with work that is not the bench's, between two snapshots.

    ``other_vcpus``: average vCPUs' worth of user+system time used by processes the bench did
    not start (machine total minus this process and its reaped children: every server and
    worker is a child, stopped and waited for before the end snapshot). Interrupt time (the
    loopback TCP traffic itself) is left out. ``steal_vcpus``: time the hypervisor ran others.
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


__all__ = ["background_cpu", "collect", "cpu_model", "cpu_snapshot", "loadavg", "utc_now"]
