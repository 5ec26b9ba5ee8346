"""A raw websocket client for the tests that pipeline: frames built with the library's sans-IO
client (``websockets.client.ClientProtocol``) and written in one go, so one read hands the
server a whole pipeline; replies, pushes and the close frame read back as they came."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Sequence
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from transports.websocket._server import WebSocketServer

WAIT = 15.0
PASSWORD = "pw-secret-123"


class Pipeline:
    """A raw connection: frames built with the library's sans-IO client, written in one go."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol: ClientProtocol | None = None
        self.unseen: list[Any] = []  # events read but not looked at yet

    @classmethod
    async def open(cls, server: WebSocketServer) -> Pipeline:
        host, port = server.address
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipeline = cls(reader, writer)
        protocol = ClientProtocol(
            parse_uri(f"ws://{host}:{port}/chat"), subprotocols=[Subprotocol("wirechat.v2.json")]
        )
        protocol.send_request(protocol.connect())
        writer.write(b"".join(protocol.data_to_send()))
        pipeline.protocol = protocol
        await pipeline._events(until=lambda events: protocol.handshake_exc is None and bool(events))
        pipeline.unseen.pop(0)  # (the handshake's response)
        return pipeline

    def frames(self, messages: Sequence[dict[str, Any] | str | bytes]) -> bytes:
        """Frames of ``messages``: a dict as JSON text, a str as text, bytes as given
        (a binary frame, or with ``text()`` a text frame of those bytes)."""
        assert self.protocol is not None
        for message in messages:
            if isinstance(message, dict):
                self.protocol.send_text(json.dumps(message).encode())
            elif isinstance(message, str):
                self.protocol.send_text(message.encode())
            else:
                self.protocol.send_binary(message)
        return b"".join(self.protocol.data_to_send())

    async def _events(self, until: Any) -> list[Any]:
        """Read until ``until(events)``; the events it leaves in the list are kept for the
        next call."""
        assert self.protocol is not None
        events, self.unseen = self.unseen, []
        async with asyncio.timeout(WAIT):
            while not until(events):
                data = await self.reader.read(65536)
                if data:
                    self.protocol.receive_data(data)
                else:
                    self.protocol.receive_eof()
                for event in self.protocol.events_received():
                    events.append(event)
                self.writer.write(b"".join(self.protocol.data_to_send()))  # (pongs, close)
                if not data:
                    break
        self.unseen = events
        return events

    async def replies(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` replies (pushes left out)."""
        messages: list[dict[str, Any]] = []

        def enough(events: list[Any]) -> bool:
            while events and len(messages) < count:
                event = events[0]
                if not (isinstance(event, Frame) and event.opcode is Opcode.TEXT):
                    break  # (a close frame: left for close_code)
                events.pop(0)
                message = json.loads(bytes(event.data))
                if "push" not in message:
                    messages.append(message)
            return len(messages) >= count or bool(events)

        await self._events(enough)
        assert len(messages) == count, (messages, self.unseen)
        return messages

    async def pending_bodies(self, name: str) -> list[str]:
        """Log in as ``name``: the bodies of the deliver pushes of what was pending (as many as
        the login's reply says), in the order they came."""
        self.writer.write(
            self.frames([{"id": 1, "op": "login", "username": name, "password": PASSWORD}])
        )
        replies: list[dict[str, Any]] = []
        pending: list[str] = []

        def delivered(events: list[Any]) -> bool:
            for event in events:
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    message = json.loads(bytes(event.data))
                    if message.get("push") == "deliver":
                        pending.append(message["body"])
                    elif "push" not in message:
                        replies.append(message)
            events.clear()
            return bool(replies) and len(pending) >= replies[0]["ok"]["pending"]

        await self._events(delivered)
        return pending

    async def until_close(self) -> tuple[list[dict[str, Any]], int | None]:
        """Every reply (pushes left out) until the server's close frame, and its code."""
        messages, code, _ = await self.until_close_why()
        return messages, code

    async def until_close_why(self) -> tuple[list[dict[str, Any]], int | None, str]:
        """Every reply (pushes left out) until the server's close frame, its code and reason."""
        messages: list[dict[str, Any]] = []
        codes: list[int | None] = []
        reasons: list[str] = []

        def closed(events: list[Any]) -> bool:
            for event in events:
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    message = json.loads(bytes(event.data))
                    if "push" not in message:
                        messages.append(message)
                elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    codes.append(int.from_bytes(event.data[:2], "big") if event.data else None)
                    reasons.append(bytes(event.data[2:]).decode())
            events.clear()
            return bool(codes)

        await self._events(closed)
        assert codes, f"the server did not close after {messages!r}"
        return messages, codes[0], reasons[0]

    async def close_code(self) -> int | None:
        """Read until the server's close frame: its code."""
        return (await self.until_close())[1]

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def signed_up(server: WebSocketServer, name: str) -> Pipeline:
    pipeline = await Pipeline.open(server)
    pipeline.writer.write(
        pipeline.frames([{"id": 0, "op": "signup", "username": name, "password": PASSWORD}])
    )
    (reply,) = await pipeline.replies(1)
    assert "ok" in reply, reply
    return pipeline


async def alice_and_offline_bob(server: WebSocketServer) -> Pipeline:
    """ "bob" signed up and gone (his messages stay pending); "alice" signed up, returned."""
    await (await signed_up(server, "bob")).close()
    return await signed_up(server, "alice")


async def pending_to(server: WebSocketServer, name: str) -> list[str]:
    """What ``name`` finds pending at a login, in the order it is delivered."""
    reader = await Pipeline.open(server)
    try:
        return await reader.pending_bodies(name)
    finally:
        await reader.close()
