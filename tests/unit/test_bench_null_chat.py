"""bench/refs/null_chat.py: chat.proto served with no chat behind it (the gRPC contract's
floor). It must answer what the bench's stock-library clients send, as the contract says, or
the floor it gives would be a floor of something else."""

from __future__ import annotations

import grpc
import pytest

from bench.refs import null_chat
from bench.refs.independent_aio import AioStream, AioUnary
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._generated import chat_pb2_grpc


async def test_the_stock_stubs_send_through_it() -> None:
    server, port = await null_chat.start("127.0.0.1", 0)
    unary, stream = AioUnary(), AioStream()
    try:
        await unary.open(("127.0.0.1", port), "alice", "bob")
        await unary.send()
        await stream.open(("127.0.0.1", port), "carol", "bob")
        await stream.send()
        reply = await stream.call(pb.ClientMessage(send=pb.SendRequest(recipients=["bob"])))
        assert reply.WhichOneof("message") == "sent" and reply.sent.message_id > 0
    finally:
        await unary.close()
        await stream.close()
        await server.stop(None)


async def test_a_send_without_a_session_is_refused_as_the_contract_says() -> None:
    server, port = await null_chat.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = chat_pb2_grpc.ChatStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Send(pb.SendRequest(recipients=["bob"], body="hi"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.Login(pb.LoginRequest(username="a", password="b"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await channel.close()
        await server.stop(None)
