"""tcp_echo: length-prefixed echo on asyncio + uvloop, the loop the custom server runs on.

A bare ``asyncio.Protocol``: it finds whole frames in what arrived and writes them back in one
``write``; no streams, no tasks, no copies beyond the one slice it sends.
"""

from __future__ import annotations

import asyncio
from typing import cast

from bench.refs import HEADER_BYTES, MAX_PAYLOAD


class EchoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        end = 0
        while len(buf) - end >= HEADER_BYTES:
            size = int.from_bytes(buf[end : end + HEADER_BYTES], "big")
            if size > MAX_PAYLOAD:
                assert self._transport is not None
                self._transport.close()
                return
            if len(buf) - end < HEADER_BYTES + size:
                break
            end += HEADER_BYTES + size
        if end:
            assert self._transport is not None
            self._transport.write(bytes(buf[:end]))
            del buf[:end]


async def start(host: str, port: int) -> tuple[asyncio.AbstractServer, int]:
    """Listen; returns the server and the bound port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port)
    return server, server.sockets[0].getsockname()[1]
