"""The processes the bench starts, where they run, and how it stops them (by pid, only its own).

* servers: ``wirechat server`` through :class:`wirechat.launch.ServerProcess` and the reference
  servers through :class:`RefServer` (a :class:`wirechat.launch.ChildProcess`); both pinned
  to the server vCPU.
* workers: ``python -m bench.worker``, the client side of every measurement, pinned to the
  client vCPU (or to the server's vCPU for the same-vCPU rows). A worker reads one JSON job per
  line on stdin and answers one JSON line on stdout; a job that overruns its time limit gets its
  worker killed and the next job a fresh one.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from wirechat.launch import ChildProcess, pin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Which vCPU the servers and the clients run on."""

    server_cpu: int | None
    client_cpu: int | None

    @property
    def label(self) -> str:
        if self.server_cpu is None or self.client_cpu is None:
            return "unpinned"
        return "same vCPU" if self.server_cpu == self.client_cpu else "different vCPUs"

    @property
    def key(self) -> str:
        """Short form used in results.json rows."""
        if self.server_cpu is None or self.client_cpu is None:
            return "unpinned"
        return "same" if self.server_cpu == self.client_cpu else "cross"


def available_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def choose_placement() -> tuple[Placement, Placement]:
    """(main placement on two different vCPUs, same-vCPU placement), from the usable vCPUs.

    The server gets the lowest vCPU and the clients the next one; with a single usable vCPU
    both placements are "same" and the report says so.
    """
    cpus = available_cpus()
    if not cpus:
        return Placement(None, None), Placement(None, None)
    server = cpus[0]
    client = cpus[1] if len(cpus) > 1 else cpus[0]
    return Placement(server, client), Placement(client, client)


class RefServer(ChildProcess):
    """One reference server (``python -m bench.refs NAME``) on port 0, pinned to ``cpu``."""

    def __init__(self, name: str, *, cpu: int | None = None) -> None:
        args = [sys.executable, "-m", "bench.refs", name, "--host", "127.0.0.1"]
        super().__init__(args, cpu=cpu, label=name)
        self.name = name

    @property
    def address(self) -> tuple[str, int] | None:
        return self.addresses.get(self.name)


class JobFailed(RuntimeError):
    """A worker job raised, or overran its time limit."""


class Worker:
    """A ``python -m bench.worker`` child pinned to ``cpu``; ``run(job)`` returns its answer."""

    def __init__(self, *, cpu: int | None = None) -> None:
        self.cpu = cpu
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_tail: list[str] = []

    def start(self) -> Worker:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        pin(self.proc.pid, self.cpu)
        # Each process gets its own queue, so a killed worker's reader cannot answer for the
        # next worker's job.
        self._lines = queue.Queue()
        threading.Thread(
            target=self._read_stdout, args=(self.proc, self._lines), daemon=True
        ).start()
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()
        return self

    @staticmethod
    def _read_stdout(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def _read_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.stderr_tail.append(line.rstrip())
            del self.stderr_tail[:-40]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def run(self, job: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        """Send one job, wait up to ``timeout`` s for its answer; JobFailed on error."""
        if not self.alive:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise JobFailed(
                f"{job.get('kind')} job overran {timeout:.0f} s; worker killed"
            ) from None
        if line is None:
            tail = "\n".join(self.stderr_tail[-15:])
            self.kill()
            raise JobFailed(f"worker exited during {job.get('kind')} job:\n{tail}")
        answer = json.loads(line)
        if "error" in answer:
            raise JobFailed(answer["error"])
        rows: list[dict[str, Any]] = answer["result"]
        return rows

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self.proc = None

    def stop(self, timeout: float = 10.0) -> None:
        """Close stdin (the worker exits at EOF), then kill it if it lingers."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            proc.kill()
            proc.wait(timeout)
        self.proc = None

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["JobFailed", "Placement", "RefServer", "Worker", "available_cpus", "choose_placement"]
