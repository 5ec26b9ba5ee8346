"""The proto alone is enough: a client written from chat.proto's comments, with nothing but the
generated stubs and grpc (not our client class, not our constants), chats with a real server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import grpc
import pytest

from transports.grpc._generated import chat_pb2, chat_pb2_grpc
from wirechat.launch import ServerProcess


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc = ServerProcess(["grpc"], tmp_path_factory.mktemp("stubs") / "db.sqlite").start()
    try:
        host, port = proc.addresses["grpc"]
        yield f"{host}:{port}"
    finally:
        proc.stop()


async def test_sign_up_log_in_subscribe_send_receive_ack(target: str) -> None:
    alice, bob = "a" + uuid.uuid4().hex[:10], "b" + uuid.uuid4().hex[:10]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)

        def session(token: str) -> tuple[tuple[str, str], ...]:
            return (("wirechat-session", token),)  # the key documented in chat.proto

        signup = await stub.Signup(chat_pb2.SignupRequest(username=alice, password="pw-secret-1"))
        as_alice = session(signup.session_token)
        await stub.Signup(chat_pb2.SignupRequest(username=bob, password="pw-secret-1"))

        # Alice writes to bob before he has a live session: it waits, pending.
        first = await stub.Send(
            chat_pb2.SendRequest(recipients=[bob], body="are you there?"), metadata=as_alice
        )

        login = await stub.Login(chat_pb2.LoginRequest(username=bob, password="pw-secret-1"))
        assert login.pending == 1
        as_bob = session(login.session_token)
        stream = stub.Subscribe(chat_pb2.SubscribeRequest(), metadata=as_bob)

        async with asyncio.timeout(10):
            backlog = await stream.read()
            assert (backlog.message_id, backlog.sender, backlog.body) == (
                first.message_id, alice, "are you there?",
            )  # fmt: skip
            second = await stub.Send(
                chat_pb2.SendRequest(recipients=[bob], body="pushed live"), metadata=as_alice
            )
            live = await stream.read()
        assert (live.message_id, live.sent_at_ms) == (second.message_id, second.sent_at_ms)

        await stub.Ack(
            chat_pb2.AckRequest(message_ids=[backlog.message_id, live.message_id]),
            metadata=as_bob,
        )
        await stub.Logout(chat_pb2.LogoutRequest(), metadata=as_bob)
        assert await stream.read() is grpc.aio.EOF  # logout ends the stream with OK
        assert (await stream.code()) is grpc.StatusCode.OK

        relog = await stub.Login(chat_pb2.LoginRequest(username=bob, password="pw-secret-1"))
        assert relog.pending == 0  # both acked: delivered for good


async def test_errors_name_their_reason_in_trailing_metadata(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Login(
                chat_pb2.LoginRequest(username="nobody-" + uuid.uuid4().hex[:8], password="x")
            )
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        reason = dict(caught.value.trailing_metadata())["wirechat-error"]
        assert chat_pb2.ErrorReason.Value(reason) == chat_pb2.AUTH_FAILED
