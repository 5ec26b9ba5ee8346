"""Clients of the reference servers, all with one shape: ``await connect()``, ``await
echo(payload) -> bytes``, ``await close()``.

``TcpEchoClient`` pipelines: requests may overlap on one connection and the replies come back
in order, so a FIFO of futures matches them. ``FloorClient`` is the blocking-socket client of
the floor row (its ``echo`` blocks the calling thread on purpose: that is the floor); under
load the floor server is driven by the pipelined asyncio client instead.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from typing import cast

from bench.refs import GRPC_ECHO_METHOD, HEADER_BYTES, MAX_PAYLOAD
from bench.refs.tcp_floor import recv_exact


class _PipelinedEcho(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiters: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= HEADER_BYTES:
            size = int.from_bytes(buf[:HEADER_BYTES], "big")
            if len(buf) < HEADER_BYTES + size:
                return
            payload = bytes(buf[HEADER_BYTES : HEADER_BYTES + size])
            del buf[: HEADER_BYTES + size]
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError("echo server closed the connection"))


class TcpEchoClient:
    """Length-prefixed echo over asyncio; used for tcp_echo, and for tcp_floor under load."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self._proto: _PipelinedEcho | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_PipelinedEcho, *self.address)
        self._proto = proto

    async def echo(self, payload: bytes) -> bytes:
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            raise ConnectionError("not connected")
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        proto.waiters.append(waiter)
        proto.transport.write(len(payload).to_bytes(HEADER_BYTES, "big") + payload)
        return await waiter

    async def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None


class FloorClient:
    """Blocking-socket client: ``echo`` is a plain sendall + recv_into, no event loop."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._buf = memoryview(bytearray(HEADER_BYTES + MAX_PAYLOAD))

    async def connect(self) -> None:
        sock = socket.create_connection(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def echo_blocking(self, payload: bytes) -> bytes:
        sock = self._sock
        if sock is None:
            raise ConnectionError("not connected")
        sock.sendall(len(payload).to_bytes(HEADER_BYTES, "big") + payload)
        view = self._buf
        if not recv_exact(sock, view[:HEADER_BYTES]):
            raise ConnectionError("floor server closed the connection")
        size = int.from_bytes(view[:HEADER_BYTES], "big")
        if not recv_exact(sock, view[HEADER_BYTES : HEADER_BYTES + size]):
            raise ConnectionError("floor server closed the connection")
        return bytes(view[HEADER_BYTES : HEADER_BYTES + size])

    async def echo(self, payload: bytes) -> bytes:
        return self.echo_blocking(payload)

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None


class GrpcEchoClient:
    """A grpc.aio channel and the raw-bytes Echo method of grpc_echo."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self._channel = None
        self._echo = None

    async def connect(self) -> None:
        import grpc

        host, port = self.address
        self._channel = grpc.aio.insecure_channel(f"{host}:{port}")
        await self._channel.channel_ready()
        self._echo = self._channel.unary_unary(GRPC_ECHO_METHOD)

    async def echo(self, payload: bytes) -> bytes:
        if self._echo is None:
            raise ConnectionError("not connected")
        return await self._echo(payload)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._echo = None


EchoClient = TcpEchoClient | FloorClient | GrpcEchoClient


def echo_client(ref: str, address: tuple[str, int], *, blocking_floor: bool = True) -> EchoClient:
    """The client for reference ``ref``; ``blocking_floor=False`` drives tcp_floor pipelined."""
    if ref == "grpc_echo":
        return GrpcEchoClient(address)
    if ref == "tcp_floor" and blocking_floor:
        return FloorClient(address)
    return TcpEchoClient(address)


__all__ = ["EchoClient", "FloorClient", "GrpcEchoClient", "TcpEchoClient", "echo_client"]
