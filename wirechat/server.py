"""The server process: one event loop, one ChatService, every listener asked for.

``wirechat server`` opens the custom-protocol listener and/or the gRPC server around the same
ChatService, so users on either transport talk to each other. Each listener logs one line
``listening: <transport> <host>:<port>`` (tests and the bench read the port from it when they
ask for port 0). SIGINT/SIGTERM stop it cleanly: listeners close, sessions end, the store closes.

With ``tls`` every listener speaks TLS. A server bound to anything but the loopback refuses to
start in clear unless told ``insecure`` (DESIGN.md, "Security at the edge").
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field

from core import ChatService, DeletedSenderPolicy, HashCost
from core.bus import Bus, open_bus
from core.pacing import Pacing
from core.store import open_store
from core.types import Retention
from transports import registry
from transports._guard import Guard, ServerLimits
from transports._tls import ServerTls
from wirechat.gc_policy import GcWatch, policy_from_environment

log = logging.getLogger("wirechat.server")


#: The loop-lag watch (``LoopLag``): a timer every LAG_TICK seconds; a tick late by LAG_LOG or
#: more is one log line (the hostile scene reads them as it reads the collector's pauses). A
#: tick costs a few microseconds: 100 a second are ~0.05 % of a CPU.
LAG_TICK = 0.01
LAG_LOG = 0.02
#: The lateness thresholds the summary counts, in seconds.
LAG_STEPS = (0.02, 0.05, 0.1, 0.5, 1.0)


class LoopLag:
    """How late the event loop runs its timers: the length of the loop iterations that other
    clients wait for. One line per late tick (``loop: lag N ms at T``), and a summary at the
    end and on ``kill -USR1``. Each tick also tells ``guard`` (``Guard.note_lag``), which
    sheds new work that can wait while the loop runs far behind."""

    def __init__(self, guard: Guard | None = None) -> None:
        self._guard = guard
        self.ticks = 0
        self.late = [0] * len(LAG_STEPS)
        self.worst = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + LAG_TICK
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        late = max(0.0, now - self._due)
        self.ticks += 1
        if self._guard is not None:
            self._guard.note_lag(late)
        if late >= LAG_STEPS[0]:
            for i, step in enumerate(LAG_STEPS):
                if late >= step:
                    self.late[i] += 1
            self.worst = max(self.worst, late)
            if late >= LAG_LOG:
                log.info("loop: lag %.1f ms at %.3f", late * 1000, time.time())
        self._due = now + LAG_TICK
        self._handle = loop.call_at(self._due, self._tick)

    def summary(self) -> str:
        """One line: the ticks, how many were late by each step, the worst."""
        steps = " ".join(
            f">={step * 1000:.0f}ms={n}" for step, n in zip(LAG_STEPS, self.late, strict=True)
        )
        return f"loop: summary ticks={self.ticks} {steps} worst={self.worst * 1000:.0f}ms"


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)  # transport name -> port (0 = any)
    db: str = "wirechat.db"
    synchronous: str = "NORMAL"
    deleted_sender: DeletedSenderPolicy = DeletedSenderPolicy.PURGE
    hash_cost: HashCost = HashCost.DEFAULT
    retention: Retention = field(default_factory=Retention)
    limits: ServerLimits = field(default_factory=ServerLimits)
    tls: ServerTls | None = None  # every listener over TLS
    insecure: bool = False  # allow serving in clear on an address other than the loopback
    bus: str = ""  # "" = this process only; nats://host:port = a node of a cluster (core.bus)
    node_name: str = ""  # this node's name on the bus ("" = host-pid)
    sweep_interval: float | None = None  # seconds between bus sweeps (None: the default)


class InsecureBind(ValueError):
    """Asked to serve in clear on an address a network can reach."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only: 127.0.0.0/8, ::1 or localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name other than localhost (or "" = every address): not loopback
        return False


def check_exposure(config: ServerConfig) -> None:
    """Raise :class:`InsecureBind` if ``config`` would carry passwords in clear over a network."""
    if config.tls is None and not config.insecure and not is_loopback(config.host):
        where = config.host or "every address"
        raise InsecureBind(
            f"refusing to serve in clear on {where}: passwords and messages would cross the "
            "network unencrypted. Give a certificate (--tls-cert FILE --tls-key FILE), bind "
            "to 127.0.0.1, or pass --insecure if this network is trusted"
        )


def install_fast_loop() -> None:
    """Use uvloop when it is installed: both asyncio streams and grpc.aio run on it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(config: ServerConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives (InsecureBind: see
    :func:`check_exposure`)."""
    check_exposure(config)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    store = open_store(config.db, synchronous=config.synchronous)
    await store.open()  # a networked store connects now: an unreachable one fails at start
    bus: Bus | None = None
    if config.bus:
        node = config.node_name or f"{socket.gethostname()}-{os.getpid()}"
        bus = open_bus(config.bus, store, node=node, sweep_interval=config.sweep_interval)
    guard = Guard(config.limits)  # one for every listener: the caps are server-wide
    service = ChatService(
        store,
        deleted_sender=config.deleted_sender,
        hash_cost=config.hash_cost,
        retention=config.retention,
        bus=bus,
        # (every session on every transport: core.pacing; the numbers are ServerLimits'. A
        # search is refused while the loop runs behind: the lag LoopLag feeds the Guard.)
        pacing=Pacing(
            config.limits.ack_ids_per_second,
            config.limits.list_accounts_share,
            loop_lag=lambda: guard.lag,
            shed_lag=config.limits.shed_lag,
        ),
    )
    if bus is not None:
        try:
            await bus.start()  # an unreachable bus fails at start, like the store
        except BaseException:
            await store.close()
            raise
    lag = LoopLag(guard)
    servers = []
    gc_watch = GcWatch(policy_from_environment())
    try:
        for name, port in config.ports.items():
            server = await registry.get(name).start_server(
                service, config.host, port, guard=guard, tls=config.tls
            )
            servers.append(server)
            host, bound = server.address
            log.info("listening: %s %s:%d%s", name, host, bound, " (TLS)" if config.tls else "")
        gc_watch.start()  # (the start-up heap is built: frozen, never walked again)
        lag.start()
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            # `kill -USR1 <pid>`: the collector's figures so far, in the log (tests read it)
            def figures() -> None:
                log.info("%s", gc_watch.summary())
                log.info("%s", lag.summary())

            loop.add_signal_handler(signal.SIGUSR1, figures)
        log.info(
            "ready: db=%s deleted-sender=%s%s",
            config.db,
            config.deleted_sender.value,
            f" bus={config.bus}" if config.bus else "",
        )
        await stop.wait()
        log.info("stopping")
        log.info("%s", gc_watch.summary())
        log.info("%s", lag.summary())
    finally:
        lag.stop()
        gc_watch.stop()
        await service.shutdown()
        for server in servers:
            await server.close()
        if bus is not None:
            await bus.close()
        await store.close()
