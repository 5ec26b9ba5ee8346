"""bench/refs/null_frames.py: custom's and protobuf-tcp's contracts served with no chat behind
them (their floor beside tcp_echo). It must answer what the bench's independent clients send
as each PROTOCOL.md says, in the same bytes a chat server's replies take, or the floor it gives
would be a floor of something else."""

from __future__ import annotations

import asyncio

import pytest

from bench.refs import hand_frames, null_frames
from bench.refs.independent_aio import AioCustom, AioProtobufTcp
from transports.custom import Connection
from transports.custom._codec import NEED_DATA, Role
from transports.custom._events import Hello, Send, Sent, SignedUp, Signup, Welcome
from transports.grpc._generated import chat_pb2 as pb


@pytest.mark.parametrize("client", [AioCustom, AioProtobufTcp])
async def test_the_independent_clients_send_through_it(client: type) -> None:
    server, port = await null_frames.start("127.0.0.1", 0)
    sender = client()
    try:
        await sender.open(("127.0.0.1", port), "alice", "bob")
        first, second = await sender.send(), await sender.send()
        assert 0 < first < second  # ids increase, as a chat server's do
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()


async def test_its_custom_frames_are_what_the_products_codec_reads() -> None:
    # the product's client codec (not the hand frames the server is written with) writes the
    # requests and reads the replies: the bytes are the protocol's, not a private dialect
    server, port = await null_frames.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    codec = Connection(Role.CLIENT)
    try:
        writer.write(codec.send(Hello(1, 2)))
        events: list[object] = []
        async with asyncio.timeout(10):
            while not events:
                codec.receive_data(await reader.read(4096))
                events += _drain(codec)
            writer.write(codec.send(Signup(1, "alice", "pw-12345")))
            writer.write(codec.send(Send(2, ("bob",), "hi")))
            while len(events) < 3:
                codec.receive_data(await reader.read(4096))
                events += _drain(codec)
        welcome, signed_up, sent = events
        assert isinstance(welcome, Welcome) and welcome.version == 2
        assert isinstance(signed_up, SignedUp) and signed_up.request_id == 1
        assert isinstance(sent, Sent) and (sent.request_id, sent.message_id) == (2, 1)
        assert sent.conversation_id == 1 and sent.unknown_recipients == ()
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


def _drain(codec: Connection) -> list[object]:
    out = []
    while (event := codec.next_event()) is not NEED_DATA:
        out.append(event)
    return out


async def test_a_protobuf_sent_is_a_send_reply() -> None:
    server, port = await null_frames.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        bodies = hand_frames.BODIES["protobuf-tcp"]
        writer.write(bodies.hello())
        writer.write(hand_frames.frame(hand_frames.SEND, 7, bodies.send("bob", "hi")))
        got = hand_frames.FrameReader()
        frames = []
        async with asyncio.timeout(10):
            while len(frames) < 2:
                got.feed(await reader.read(4096))
                while (one := got.next()) is not None:
                    frames.append(one)
        (welcome, _, _), (opcode, request_id, body) = frames
        assert welcome == hand_frames.WELCOME
        assert (opcode, request_id) == (hand_frames.SENT, 7)
        reply = pb.SendReply.FromString(body)
        assert reply.message_id == 1 and reply.conversation_id == 1 and reply.sent_at_ms > 0
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


async def test_what_it_does_not_serve_closes_the_connection() -> None:
    server, port = await null_frames.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(hand_frames.frame(hand_frames.SEND, 1, b"\x01\x03bobhi"))  # before HELLO
        async with asyncio.timeout(10):
            assert await reader.read() == b""
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
