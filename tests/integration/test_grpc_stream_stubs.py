"""chat.proto alone is enough for ChatStream: a client written from its comments, with nothing
but the generated stubs and grpc (not our client, not our constants), chats with a real server
process; the server answers ordinary gRPC tooling (health, reflection) for the service."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from transports.grpc._generated import chat_pb2, chat_pb2_grpc
from wirechat.launch import ServerProcess

WAIT = 10.0


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc = ServerProcess(["grpc-stream"], tmp_path_factory.mktemp("stream") / "db.sqlite").start()
    try:
        host, port = proc.addresses["grpc-stream"]
        yield f"{host}:{port}"
    finally:
        proc.stop()


def login(request_id: int, username: str) -> chat_pb2.ClientMessage:
    return chat_pb2.ClientMessage(
        request_id=request_id,
        login=chat_pb2.LoginRequest(username=username, password="pw-secret-1"),
    )


async def test_sign_up_send_receive_ack_and_leave_on_two_plain_streams(target: str) -> None:
    alice, bob = "a" + uuid.uuid4().hex[:10], "b" + uuid.uuid4().hex[:10]
    async with grpc.aio.insecure_channel(target) as channel, asyncio.timeout(WAIT):
        stub = chat_pb2_grpc.ChatStreamStub(channel)
        as_alice, as_bob = stub.Connect(), stub.Connect()

        await as_alice.write(
            chat_pb2.ClientMessage(
                request_id=1, signup=chat_pb2.SignupRequest(username=alice, password="pw-secret-1")
            )
        )
        signed_up = await as_alice.read()
        assert (signed_up.request_id, signed_up.logged_in.username) == (1, alice)
        assert signed_up.logged_in.session_token == ""  # the stream is the session

        await as_bob.write(
            chat_pb2.ClientMessage(
                request_id=1, signup=chat_pb2.SignupRequest(username=bob, password="pw-secret-1")
            )
        )
        assert (await as_bob.read()).WhichOneof("message") == "logged_in"

        # request_id left at 0: a client that waits for each reply need not number them
        await as_alice.write(
            chat_pb2.ClientMessage(send=chat_pb2.SendRequest(recipients=[bob], body="hi bob"))
        )
        sent = await as_alice.read()
        assert sent.WhichOneof("message") == "sent" and sent.request_id == 0

        push = await as_bob.read()
        assert (push.request_id, push.WhichOneof("message")) == (0, "delivery")
        assert (push.delivery.message_id, push.delivery.sender, push.delivery.body) == (
            sent.sent.message_id, alice, "hi bob",
        )  # fmt: skip

        await as_bob.write(
            chat_pb2.ClientMessage(
                request_id=2, ack=chat_pb2.AckRequest(message_ids=[push.delivery.message_id])
            )
        )  # no reply to a good ack
        await as_bob.write(chat_pb2.ClientMessage(request_id=3, logout=chat_pb2.LogoutRequest()))
        logged_out = await as_bob.read()
        assert (logged_out.request_id, logged_out.WhichOneof("message")) == (3, "logged_out")

        await as_bob.write(login(4, bob))  # the same stream logs in again
        relogin = await as_bob.read()
        assert (relogin.request_id, relogin.logged_in.pending) == (4, 0)  # acked: delivered

        for call in (as_alice, as_bob):  # done writing: the server ends the call with OK
            await call.done_writing()
            assert await call.read() is grpc.aio.EOF
            assert await call.code() is grpc.StatusCode.OK


async def test_a_refused_request_names_its_reason(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel, asyncio.timeout(WAIT):
        call = chat_pb2_grpc.ChatStreamStub(channel).Connect()
        await call.write(
            chat_pb2.ClientMessage(request_id=7, list_accounts=chat_pb2.ListAccountsRequest())
        )
        refused = await call.read()
        assert refused.request_id == 7
        assert chat_pb2.ErrorReason.Name(refused.error.reason) == "NOT_LOGGED_IN"
        assert refused.error.message  # a sentence for a person
        await call.write(login(8, "nobody-" + uuid.uuid4().hex[:8]))
        failed = await call.read()
        assert chat_pb2.ErrorReason.Name(failed.error.reason) == "AUTH_FAILED"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()  # Rule 4: a failed login ends the session, and the call
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert dict(caught.value.trailing_metadata())["wirechat-error"] == "LOGIN_FAILED"


async def test_health_and_reflection_know_the_service(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel, asyncio.timeout(WAIT):
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="wirechat.v1.ChatStream"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        services = [s.name async for r in call for s in r.list_services_response.service]
        assert "wirechat.v1.ChatStream" in services
