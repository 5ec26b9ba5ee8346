"""null_echo: the cheapest responder, for measuring the load generator's own ceiling.

It writes back whatever bytes arrive, as they arrive: no framing, no parsing, one ``write``
per read however many requests the read held. Fed length-prefixed frames it answers each with
its own echo, so a length-prefixed echo client cannot tell it from ``tcp_echo``; its cost per
request shrinks as the generator batches, so against it the generator, not the server, is the
limit (bench/loadgen.py).
"""

from __future__ import annotations

import asyncio
from typing import cast


class NullEcho(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._transport.write(data)


async def start(host: str, port: int) -> tuple[asyncio.AbstractServer, int]:
    """Listen; returns the server and the bound port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(NullEcho, host, port)
    return server, server.sockets[0].getsockname()[1]
