"""The server process: one event loop, one ChatService, every listener asked for.

``wirechat server`` opens the custom-protocol listener and/or the gRPC server around the same
ChatService, so users on either transport talk to each other. Each listener logs one line
``listening: <transport> <host>:<port>`` (tests and the bench read the port from it when they
ask for port 0). SIGINT/SIGTERM stop it cleanly: listeners close, sessions end, the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field

from core import ChatService, DeletedSenderPolicy, HashCost
from core.store import open_store
from core.types import Retention
from transports import registry
from transports._guard import Guard, ServerLimits

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


def install_fast_loop() -> None:
    """Use uvloop when it is installed: both asyncio streams and grpc.aio run on it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(config: ServerConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    store = open_store(config.db, synchronous=config.synchronous)
    service = ChatService(
        store,
        deleted_sender=config.deleted_sender,
        hash_cost=config.hash_cost,
        retention=config.retention,
    )
    guard = Guard(config.limits)  # one for every listener: the caps are server-wide
    servers = []
    try:
        for name, port in config.ports.items():
            server = await registry.get(name).start_server(service, config.host, port, guard=guard)
            servers.append(server)
            host, bound = server.address
            log.info("listening: %s %s:%d", name, host, bound)
        log.info("ready: db=%s deleted-sender=%s", config.db, config.deleted_sender.value)
        await stop.wait()
        log.info("stopping")
    finally:
        await service.shutdown()
        for server in servers:
            await server.close()
        await store.close()
