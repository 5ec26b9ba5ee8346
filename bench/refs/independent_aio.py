"""independent_aio: asyncio clients written from each transport's contract with a stock
library, one call in flight: what *any* asyncio client of the transport pays, the floor the
product's asyncio ChatClient is read against (issue 8's p50 targets), beside the blocking
clients of bench/refs/independent.py that time the ladder.

Each has ``LIBRARY`` (in words), ``await open(address, username, recipient, body)`` (connect
and sign up), ``await send()`` (one 32 B SEND to an offline recipient, its reply decoded) and
``await close()``:

* custom, protobuf-tcp: an ``asyncio.Protocol`` around bench/refs/hand_frames.py and a future
  per call;
* websocket: the ``websockets`` library's asyncio client, CONTRACT.md's JSON;
* grpc-stream: a ``grpc.aio`` stub on ``ChatStream.Connect``;
* grpc: a ``grpc.aio`` stub, unary ``Send`` with the ``wirechat-session`` metadata.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
from websockets import Subprotocol
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from bench.refs import hand_frames
from transports.grpc._generated import chat_pb2, chat_pb2_grpc

PASSWORD = "correct horse 1"
BODY = "x" * 32
#: The unary call's deadline, as the product's client sets one. No other call has a timeout
#: of its own: ``asyncio.wait_for`` costs a timer (and on a coroutine a task) per call, which
#: would make the floor slower than what it is the floor of; a hung server ends the bench
#: step on its own timeout (bench/latency.py ``SECTION_TIMEOUT``).
TIMEOUT_S = 10.0
Address = tuple[str, int]


class AioFrames(asyncio.Protocol):
    """custom's or protobuf-tcp's frames under a bare asyncio Protocol, a future per call."""

    LIBRARY = ""
    PROTOCOL = ""

    def __init__(self) -> None:
        self.bodies = hand_frames.BODIES[self.PROTOCOL]
        self.reader = hand_frames.FrameReader()
        self.transport: asyncio.Transport | None = None
        self.waiting: tuple[int, asyncio.Future[bytes]] | None = None

    async def open(self, address: Address, username: str, recipient: str, body: str = BODY) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, *address)  # TCP_NODELAY: asyncio's default
        await self.call(self.bodies.hello(), hand_frames.WELCOME)
        signup = hand_frames.frame(hand_frames.SIGNUP, 1, self.bodies.signup(username, PASSWORD))
        await self.call(signup, hand_frames.SIGNED_UP)
        self.recipient, self.body = recipient, body

    async def call(self, data: bytes, reply: int) -> bytes:
        assert self.transport is not None
        waiter = asyncio.get_running_loop().create_future()
        self.waiting = (reply, waiter)
        self.transport.write(data)
        return await waiter

    async def send(self) -> int:
        frame = hand_frames.frame(hand_frames.SEND, 1, self.bodies.send(self.recipient, self.body))
        return self.bodies.sent_id(await self.call(frame, hand_frames.SENT))

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (got := self.reader.next()) is not None:
            opcode, _, body = got
            if self.waiting is None:
                continue  # a push (none here: the recipient is offline)
            reply, waiter = self.waiting
            if opcode == hand_frames.ERROR:
                waiter.set_exception(RuntimeError(f"the server refused (ERROR {body!r})"))
            elif opcode == reply:
                waiter.set_result(body)
            else:
                continue
            self.waiting = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting is not None and not self.waiting[1].done():
            self.waiting[1].set_exception(RuntimeError("the server closed the connection"))


class AioCustom(AioFrames):
    LIBRARY = "a bare asyncio Protocol and a few lines of framing (PROTOCOL.md by hand)"
    PROTOCOL = "custom"


class AioProtobufTcp(AioFrames):
    LIBRARY = "a bare asyncio Protocol and the protobuf library (chat.proto in varint frames)"
    PROTOCOL = "protobuf-tcp"


class AioWebSocket:
    """CONTRACT.md's JSON over the ``websockets`` library's asyncio client."""

    LIBRARY = "the websockets library's asyncio client (JSON text)"

    async def open(self, address: Address, username: str, recipient: str, body: str = BODY) -> None:
        host, port = address
        self.ws: ClientConnection = await ws_connect(
            f"ws://{host}:{port}/chat",
            subprotocols=[Subprotocol("wirechat.v2.json")],
            compression=None,
        )
        self.last_id = 0
        self.recipient, self.body = recipient, body
        await self.call({"op": "signup", "username": username, "password": PASSWORD})

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        self.last_id += 1
        request["id"] = self.last_id
        await self.ws.send(json.dumps(request, separators=(",", ":")))
        while True:  # pushes would come between replies (none here)
            reply: dict[str, Any] = json.loads(await self.ws.recv())
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"websocket refused {request['op']}: {reply['error']}")
                return reply

    async def send(self) -> None:
        await self.call({"op": "send", "to": [self.recipient], "body": self.body})

    async def close(self) -> None:
        await self.ws.close()


class AioStream:
    """chat.proto's ``ChatStream.Connect`` through a ``grpc.aio`` stub: write a request, read
    replies until its own."""

    LIBRARY = "a grpc.aio stub (ChatStream.Connect)"

    async def open(self, address: Address, username: str, recipient: str, body: str = BODY) -> None:
        self.channel = grpc.aio.insecure_channel(f"{address[0]}:{address[1]}")
        self.call_ = chat_pb2_grpc.ChatStreamStub(self.channel).Connect()
        self.last_id = 0
        signup = chat_pb2.SignupRequest(username=username, password=PASSWORD)
        await self.call(chat_pb2.ClientMessage(signup=signup))
        self.request = chat_pb2.SendRequest(recipients=[recipient], body=body)

    async def call(self, message: chat_pb2.ClientMessage) -> chat_pb2.ServerMessage:
        self.last_id += 1
        message.request_id = self.last_id
        await self.call_.write(message)
        while True:
            reply = await self.call_.read()
            if reply is grpc.aio.EOF:
                raise RuntimeError("the stream ended")
            if reply.request_id == self.last_id:
                if reply.WhichOneof("message") == "error":
                    raise RuntimeError(f"grpc-stream refused: {reply.error}")
                return reply

    async def send(self) -> None:
        await self.call(chat_pb2.ClientMessage(send=self.request))

    async def close(self) -> None:
        await self.call_.done_writing()
        await self.channel.close()


class AioUnary:
    """The unary ``Send`` through a bare ``grpc.aio`` stub."""

    LIBRARY = "a grpc.aio stub (unary Send)"

    async def open(self, address: Address, username: str, recipient: str, body: str = BODY) -> None:
        self.channel = grpc.aio.insecure_channel(f"{address[0]}:{address[1]}")
        self.stub = chat_pb2_grpc.ChatStub(self.channel)
        signup = chat_pb2.SignupRequest(username=username, password=PASSWORD)
        reply = await self.stub.Signup(signup)
        self.metadata = (("wirechat-session", reply.session_token),)
        self.request = chat_pb2.SendRequest(recipients=[recipient], body=body)

    async def send(self) -> None:
        await self.stub.Send(self.request, metadata=self.metadata, timeout=TIMEOUT_S)

    async def close(self) -> None:
        await self.channel.close()


AioClient = AioFrames | AioWebSocket | AioStream | AioUnary

#: Each transport's asyncio client (the same keys as independent.INDEPENDENT).
BARE: dict[str, type[AioClient]] = {
    "custom": AioCustom,
    "protobuf-tcp": AioProtobufTcp,
    "websocket": AioWebSocket,
    "grpc-stream": AioStream,
    "grpc": AioUnary,
}

__all__ = ["BARE", "AioClient"]
