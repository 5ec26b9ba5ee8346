"""Start ``wirechat server`` as a child process on free ports and stop exactly that process.

Used by the tests and the bench. The server logs ``listening: <transport> <host>:<port>`` per
listener and then ``ready:``; we read those lines from its stderr to learn the ports it bound
(we always ask for port 0, so parallel runs never collide).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

_LISTENING = re.compile(r"listening: (\S+) (\S+):(\d+)")
START_TIMEOUT = 30.0


class ServerProcess:
    """A running server. ``addresses[name] == (host, port)`` for each transport it serves."""

    def __init__(
        self,
        transports: Sequence[str],
        db: str | Path,
        *,
        extra_args: Sequence[str] = (),
        hash_cost: str = "low",
        cpu: int | None = None,
        ports: dict[str, int] | None = None,
    ) -> None:
        self.transports = list(transports)
        self.db = str(db)
        self.extra_args = list(extra_args)
        self.hash_cost = hash_cost
        self.cpu = cpu
        self.wanted_ports = dict(ports or {})
        self.addresses: dict[str, tuple[str, int]] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.log_lines: list[str] = []
        self._log_thread: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ServerProcess:
        args = [sys.executable, "-m", "wirechat", "server", "--host", "127.0.0.1"]
        for name in self.transports:
            args += [f"--{name}-port", str(self.wanted_ports.get(name, 0))]
        args += ["--db", self.db, "--hash-cost", self.hash_cost, *self.extra_args]
        preexec = None
        if self.cpu is not None:
            cpu = self.cpu
            preexec = lambda: os.sched_setaffinity(0, {cpu})  # noqa: E731
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec,
        )
        self.addresses = self._wait_ready()
        self._log_thread = threading.Thread(target=self._drain_log, daemon=True)
        self._log_thread.start()
        return self

    def _wait_ready(self) -> dict[str, tuple[str, int]]:
        assert self.proc is not None and self.proc.stderr is not None
        addresses: dict[str, tuple[str, int]] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log_lines.append(line.rstrip())
            match = _LISTENING.search(line)
            if match:
                addresses[match[1]] = (match[2], int(match[3]))
            if "ready:" in line:
                return addresses
        self.stop()
        raise RuntimeError("server did not start:\n" + "\n".join(self.log_lines[-30:]))

    def _drain_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log_lines.append(line.rstrip())

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def kill9(self) -> None:
        """Kill the server abruptly (durability tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> ServerProcess:
        """Start again on the same database and the same ports."""
        self.wanted_ports = {name: port for name, (_, port) in self.addresses.items()}
        return self.start()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
