"""Throwaway instances of the services wirechat can run on, for tests, the bench and a local
cluster: each starts in a temp dir on a free 127.0.0.1 port and is stopped by the pid it
started, never by name.

:class:`PostgresService` runs Debian's PostgreSQL (package ``postgresql``, binaries under
``/usr/lib/postgresql/<major>/bin``): ``initdb`` into a temp dir (trust auth, UTF-8, C
locale so names sort by code point as SQLite's binary collation does), ``pg_ctl start``
with the Unix socket in that dir and TCP on 127.0.0.1 only, one database. PostgreSQL
refuses to run as root, so as root it runs as the ``postgres`` user the Debian package
creates (``runuser``), in a temp dir handed to that user.

:class:`NatsService` runs Debian's ``nats-server`` (package ``nats-server``; core pub/sub, no
JetStream) on 127.0.0.1 and a free port, logging into its temp dir. ``kill9()`` and
``start()`` again on the same port let a test kill the bus under load and bring it back
where the nodes are reconnecting to.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: How long initdb + start may take on a loaded 2-vCPU machine (measured ~1.3 s idle).
START_TIMEOUT_S = 60
#: The OS user PostgreSQL runs as when we are root (created by Debian's package).
SERVICE_USER = "postgres"


class ServiceMissing(RuntimeError):
    """The service's binaries are not installed (``make postgres-tools`` installs them)."""


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` that has initdb, else the dir of an
    ``initdb`` on PATH, else None."""

    def major(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (another process could take it before we bind: callers retry)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_fixed_port(host: str = "127.0.0.1") -> int:
    """A port free right now, below the kernel's ephemeral range
    (/proc/sys/net/ipv4/ip_local_port_range), for a listener that closes and listens again on
    the same port: no outgoing connection is ever given such a port meanwhile, as one may be
    given a ``free_port()`` (CI once failed to listen again with EADDRINUSE)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            first_ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768  # Linux's default
    low = max(1024, first_ephemeral - 16384)
    for port in random.sample(range(low, first_ephemeral), max(0, min(256, first_ephemeral - low))):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    return free_port(host)


class PostgresService:
    """One PostgreSQL cluster in a temp dir: ``start()``, ``url``, ``stop()``.

    ``durable=False`` turns off fsync (tests and benches that kill wirechat, never PostgreSQL:
    a commit is still written to the kernel before it returns, so it survives the death of
    any process, just not of the machine).
    """

    def __init__(
        self, *, database: str = "wirechat", user: str = "wirechat", durable: bool = True
    ) -> None:
        self.database = database
        self.user = user
        self.durable = durable
        self.host = "127.0.0.1"
        self.port = 0
        self.dir: Path | None = None
        self._bin: Path | None = None
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        """The ``postgresql://`` URL of the database (trust auth: no password)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> str:
        assert self._bin is not None
        argv = [str(self._bin / args[0]), *args[1:]]
        if self._as_root:
            argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed (exit {done.returncode}): {done.stderr.strip() or done.stdout}"
            )
        return done.stdout

    def start(self) -> PostgresService:
        """initdb, start on a free port, create the database. Raises ServiceMissing when
        PostgreSQL is not installed."""
        self._bin = postgres_bin_dir()
        if self._bin is None:
            raise ServiceMissing(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                "run `make postgres-tools` (Debian package postgresql)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="wirechat-pg-"))
        if self._as_root:
            shutil.chown(self.dir, SERVICE_USER, SERVICE_USER)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = [
            "listen_addresses=127.0.0.1",
            f"unix_socket_directories={self.dir}",
            "max_connections=100",
            "shared_buffers=32MB",
        ]
        if not self.durable:
            settings += ["fsync=off", "full_page_writes=off"]
        options = " ".join(f"-c {s}" for s in settings)
        for attempt in range(5):  # a free port can be taken before postgres binds it
            self.port = free_port(self.host)
            try:
                self._run(
                    "pg_ctl",
                    "start",
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.dir / "postgres.log"),
                    "-o",
                    f"-p {self.port} {options}",
                )
                break
            except RuntimeError:
                if attempt == 4:
                    self.stop()
                    raise
        self._run("createdb", "-h", self.host, "-p", str(self.port), "-U", self.user, self.database)
        return self

    def pid(self) -> int | None:
        """The postmaster's pid (first line of postmaster.pid), if it runs."""
        if self.dir is None:
            return None
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        return None

    def stop(self) -> None:
        """Stop the cluster we started (pg_ctl stop, then SIGKILL of its postmaster pid if
        that fails) and remove its temp dir."""
        if self.dir is None:
            return
        pid = self.pid()
        if pid is not None:
            try:
                self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
            except (RuntimeError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> PostgresService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsService:
    """One nats-server in a temp dir: ``start()``, ``url``, ``kill9()``, ``stop()``."""

    def __init__(self, *, port: int = 0) -> None:
        self.host = "127.0.0.1"
        self.port = port  # 0: a free one at the first start, kept for restarts
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> NatsService:
        """Start nats-server (again, on the same port, after ``kill9``). Raises ServiceMissing
        when it is not installed."""
        binary = shutil.which("nats-server") or (
            "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None
        )
        if binary is None:
            raise ServiceMissing(
                "nats-server is not installed: run `make nats-tools` (Debian package nats-server)"
            )
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="wirechat-nats-"))
        for attempt in range(5):  # a free port can be taken before nats-server binds it
            port = self.port or free_port(self.host)
            self.proc = subprocess.Popen(
                [binary, "-a", self.host, "-p", str(port), "-l", str(self.dir / "nats.log")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_listening(port):
                self.port = port
                return self
            self._kill()
            if self.port and attempt >= 2:  # a fixed port that stays taken
                break
        self.stop()
        raise RuntimeError(f"nats-server did not start (log: {self.dir})")

    def _wait_listening(self, port: int) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection((self.host, port), 0.5):
                return True
            time.sleep(0.02)
        return False

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def kill9(self) -> None:
        """Kill nats-server abruptly (the port is kept for ``start()``)."""
        self._kill()

    def stop(self) -> None:
        """Stop the nats-server we started (SIGTERM, then SIGKILL) and remove its temp dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self._kill()
        self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> NatsService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_cluster(nodes: int = 3, hash_cost: str = "default") -> int:
    """``make cluster``: PostgreSQL, nats-server and ``nodes`` wirechat nodes on this machine,
    node k serving every wire transport on its default port + 100*k, until Ctrl-C. Everything
    lives in temp dirs and goes when it stops (a place to try a cluster, not to keep data)."""
    from transports import registry
    from wirechat.launch import ServerProcess

    ports = {
        e.name: e.default_port
        for e in registry.ENTRIES
        if e.name in registry.WIRE_TRANSPORTS and e.default_port is not None
    }
    started: list[ServerProcess] = []
    with PostgresService() as postgres, NatsService() as nats:
        print(f"PostgreSQL  {postgres.url}  (pid {postgres.pid()})")
        print(f"nats-server {nats.url}  (pid {nats.pid})")
        try:
            for k in range(1, nodes + 1):
                node = ServerProcess(
                    [],
                    postgres.url,
                    hash_cost=hash_cost,
                    extra_args=[
                        *(f"--listen={name}={port + 100 * k}" for name, port in ports.items()),
                        *("--bus", nats.url, "--node-name", f"node{k}"),
                    ],
                ).start()
                started.append(node)
                bound = "  ".join(f"{n}={p}" for n, (_, p) in sorted(node.addresses.items()))
                print(f"node{k} (pid {node.pid}): {bound}")
            print(
                f"\nTry: wirechat client --transport custom --port {ports['custom'] + 100} "
                f"(node1), and --port {ports['custom'] + 200} (node2) in another terminal.\n"
                "kill -9 a node's pid and log in again on another node: nothing acknowledged "
                "is lost. Ctrl-C stops everything."
            )
            while True:  # until Ctrl-C (a node killed to try it stays dead)
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping")
        finally:
            for node in started:
                node.stop()
    return 0


__all__ = [
    "NatsService",
    "PostgresService",
    "ServiceMissing",
    "free_port",
    "postgres_bin_dir",
    "run_cluster",
]


if __name__ == "__main__":  # python -m wirechat.services cluster [NODES]
    import sys

    if sys.argv[1:2] != ["cluster"]:
        sys.exit("usage: python -m wirechat.services cluster [NODES]")
    sys.exit(run_cluster(int(sys.argv[2]) if len(sys.argv) > 2 else 3))
