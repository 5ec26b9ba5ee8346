"""Clients of the reference servers, all with one shape: ``await connect()``, ``await
echo(payload) -> bytes``, ``await close()``.

``TcpEchoClient`` pipelines: requests may overlap on one connection and the replies come back
in order, so a FIFO of futures matches them; so do the stream clients (``GrpcStreamEchoClient``:
one bidi stream; ``WsEchoClient``: one WebSocket), whose one reader task resolves the FIFO as
the transports' own clients do for their pushes. ``FloorClient`` is the blocking-socket client
of the floor row (its ``echo`` blocks the calling thread on purpose: that is the floor); under
load the floor server is driven by the pipelined asyncio client instead.

``echo_client(name, address)`` picks the client by the reference's name (its module in this
package); a reference without a client of its own is spoken to with the length-prefixed TCP
echo client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib
import socket
from typing import Any, cast

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
        self._channel: Any = None
        self._echo: Any = None

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


class _InOrderReplies:
    """A FIFO of waiters resolved by one reader task, for clients whose replies come back in
    the order the requests went (one stream, one WebSocket)."""

    def __init__(self) -> None:
        self.waiters: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.reader: asyncio.Task[None] | None = None

    def expect(self) -> asyncio.Future[bytes]:
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    def reply(self, payload: bytes) -> None:
        waiter = self.waiters.popleft()
        if not waiter.done():
            waiter.set_result(payload)

    def fail(self, why: str) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError(why))

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader
        self.reader = None
        self.fail("closed")


#: gRPC method path of grpc_stream_echo, unless its module names another (``METHOD``).
GRPC_STREAM_ECHO_METHOD = "/wirechat.bench.Echo/EchoStream"


def _ref_attr(module: str, names: tuple[str, ...], default: Any) -> Any:
    """A constant of a reference server's module, under the first of ``names`` it defines."""
    try:
        found = importlib.import_module(f"bench.refs.{module}")
    except ImportError:
        return default
    return next((getattr(found, n) for n in names if hasattr(found, n)), default)


class GrpcStreamEchoClient:
    """One bidi stream of grpc_stream_echo: each request message is echoed back on it."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self._channel: Any = None
        self._call: Any = None
        self._replies = _InOrderReplies()
        self._write_lock = asyncio.Lock()

    async def connect(self) -> None:
        import grpc

        method = _ref_attr(
            "grpc_stream_echo",
            ("METHOD", "GRPC_STREAM_ECHO_METHOD", "METHOD_PATH"),
            GRPC_STREAM_ECHO_METHOD,
        )
        host, port = self.address
        self._channel = grpc.aio.insecure_channel(f"{host}:{port}")
        await self._channel.channel_ready()
        self._call = self._channel.stream_stream(method)()
        self._replies.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import grpc

        try:
            while True:
                reply = await self._call.read()
                if reply is grpc.aio.EOF:
                    break
                self._replies.reply(reply)
        except Exception as exc:
            self._replies.fail(f"echo stream failed: {exc}")
            return
        self._replies.fail("echo stream ended")

    async def echo(self, payload: bytes) -> bytes:
        if self._call is None:
            raise ConnectionError("not connected")
        waiter = self._replies.expect()
        async with self._write_lock:  # grpc.aio allows one write in flight per call
            await self._call.write(payload)
        return await waiter

    async def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        await self._replies.stop()
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._call = None


class WsEchoClient:
    """One WebSocket to ws_echo (no compression: the bare protocol); text messages, as the
    websocket transport sends its JSON."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self._ws: Any = None
        self._replies = _InOrderReplies()

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        host, port = self.address
        self._ws = await connect(f"ws://{host}:{port}/", compression=None, max_size=MAX_PAYLOAD)
        self._replies.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                self._replies.reply(message.encode() if isinstance(message, str) else message)
        except Exception as exc:
            self._replies.fail(f"echo WebSocket failed: {exc}")
            return
        self._replies.fail("echo WebSocket closed")

    async def echo(self, payload: bytes) -> bytes:
        if self._ws is None:
            raise ConnectionError("not connected")
        waiter = self._replies.expect()
        await self._ws.send(payload.decode())
        return await waiter

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        await self._replies.stop()
        self._ws = None


EchoClient = TcpEchoClient | FloorClient | GrpcEchoClient | GrpcStreamEchoClient | WsEchoClient

#: The client of each reference server that is not spoken to with length-prefixed TCP frames.
CLIENTS: dict[str, type[GrpcEchoClient | GrpcStreamEchoClient | WsEchoClient]] = {
    "grpc_echo": GrpcEchoClient,
    "grpc_stream_echo": GrpcStreamEchoClient,
    "ws_echo": WsEchoClient,
}


def echo_client(ref: str, address: tuple[str, int], *, blocking_floor: bool = True) -> EchoClient:
    """The client for reference ``ref``; ``blocking_floor=False`` drives tcp_floor pipelined."""
    if ref in CLIENTS:
        return CLIENTS[ref](address)
    if ref == "tcp_floor" and blocking_floor:
        return FloorClient(address)
    return TcpEchoClient(address)


__all__ = [
    "CLIENTS",
    "EchoClient",
    "FloorClient",
    "GrpcEchoClient",
    "GrpcStreamEchoClient",
    "TcpEchoClient",
    "WsEchoClient",
    "echo_client",
]
