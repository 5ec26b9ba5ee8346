"""Start wirechat processes (servers, the web gateway, bench references) as children on free
ports, and stop exactly those processes.

Every such program logs ``listening: <name> <host>:<port>`` per listener and then a line
starting ``ready:`` on stderr; :class:`ChildProcess` reads those lines to learn the ports it
bound (we always ask for port 0, so parallel runs never collide). Used by the tests and the bench.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transports._tls import ServerTls

_LISTENING = re.compile(r"listening: (\S+) (\S+):(\d+)")
START_TIMEOUT = 30.0


def pin(pid: int, cpu: int | None) -> None:
    """Pin a just-started child to one CPU (None: leave it). Done from the parent after the
    child has exec'd, not in a ``preexec_fn``: a ``preexec_fn`` forces a plain fork() that runs
    the parent's atfork handlers, and grpc's (loaded in test and bench processes) can break the
    child with "epoll_wait error: Bad file descriptor". The child's threads, all started later
    by its own code, inherit the mask."""
    if cpu is not None:
        os.sched_setaffinity(pid, {cpu})


class ChildProcess:
    """A child that announces its listeners; ``addresses[name] == (host, port)``."""

    def __init__(self, args: Sequence[str], *, cpu: int | None = None, label: str = "") -> None:
        self.args = list(args)
        self.cpu = cpu
        self.label = label or " ".join(self.args[2:4])
        self.addresses: dict[str, tuple[str, int]] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.log_lines: list[str] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        """The argv to run (subclasses build theirs from their options)."""
        return self.args

    def start(self) -> ChildProcess:
        self.addresses = {}
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        pin(self.proc.pid, self.cpu)
        # The reader gets this start's queue: a reader left from an earlier run of the child
        # (restart after kill -9) must not post its end-of-file into the new one.
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_log, args=(self.proc, lines), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:  # the child exited
                break
            match = _LISTENING.search(line)
            if match:
                self.addresses[match[1]] = (match[2], int(match[3]))
            if line.startswith("ready:") or " ready:" in line:
                return self
        self.stop()
        raise RuntimeError(f"{self.label} did not start:\n" + "\n".join(self.log_lines[-30:]))

    def _read_log(self, proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log_lines.append(line.rstrip())
            lines.put(line)
        lines.put(None)

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
        """Kill the child abruptly (durability tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> ChildProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess(ChildProcess):
    """``wirechat server`` serving ``transports`` on one database (every listener over TLS
    with ``tls``)."""

    def __init__(
        self,
        transports: Sequence[str],
        db: str | Path,
        *,
        extra_args: Sequence[str] = (),
        hash_cost: str = "low",
        cpu: int | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        super().__init__([], cpu=cpu, label="wirechat server")
        self.transports = list(transports)
        self.tls = tls
        self.db = str(db)
        self.extra_args = list(extra_args)
        self.hash_cost = hash_cost

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "wirechat", "server", "--host", "127.0.0.1"]
        for name in self.transports:
            args += ["--listen", f"{name}=0"]
        if self.tls is not None:
            args += ["--tls-cert", self.tls.cert_file, "--tls-key", self.tls.key_file]
        return [*args, "--db", self.db, "--hash-cost", self.hash_cost, *self.extra_args]

    def start(self) -> ServerProcess:
        super().start()
        return self
