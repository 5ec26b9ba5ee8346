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
    service = ChatService(
        store,
        deleted_sender=config.deleted_sender,
        hash_cost=config.hash_cost,
        retention=config.retention,
        bus=bus,
        # (every session on every transport: core.pacing; the numbers are ServerLimits')
        pacing=Pacing(config.limits.ack_ids_per_second, config.limits.list_accounts_share),
    )
    if bus is not None:
        try:
            await bus.start()  # an unreachable bus fails at start, like the store
        except BaseException:
            await store.close()
            raise
    guard = Guard(config.limits)  # one for every listener: the caps are server-wide
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
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            # `kill -USR1 <pid>`: the collector's figures so far, in the log (tests read it)
            loop.add_signal_handler(signal.SIGUSR1, lambda: log.info("%s", gc_watch.summary()))
        log.info(
            "ready: db=%s deleted-sender=%s%s",
            config.db,
            config.deleted_sender.value,
            f" bus={config.bus}" if config.bus else "",
        )
        await stop.wait()
        log.info("stopping")
        log.info("%s", gc_watch.summary())
    finally:
        gc_watch.stop()
        await service.shutdown()
        for server in servers:
            await server.close()
        if bus is not None:
            await bus.close()
        await store.close()
