"""Issue 13 on the wire of both gRPC transports: resume tokens, ChangePassword, DeleteAccount
with the password, and the new ErrorReasons, seen through raw stubs and calls as chat.proto
describes them (no ChatClient), in-process so that the sessions can be watched.

The old-client side (a client built before these fields) is in test_grpc_v1_client.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from core import ChatService, HashCost, SqliteStore
from transports.grpc import GrpcServer
from transports.grpc import start_server as start_unary
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._generated import chat_pb2_grpc
from transports.grpc._wire import ERROR_KEY, SESSION_KEY
from transports.grpc_stream import ChatStreamServer
from transports.grpc_stream import start_server as start_stream
from transports.grpc_stream._client import METHOD

WAIT = 10.0
PASSWORD = "pw-secret-1"
NEW_PASSWORD = "pw-secret-2"


def name() -> str:
    return "r" + uuid.uuid4().hex[:12]


def status(err: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str | None]:
    return err.code(), dict(err.trailing_metadata() or ()).get(ERROR_KEY)


def as_(token: str) -> tuple[tuple[str, str], ...]:
    return ((SESSION_KEY, token),)


@pytest.fixture
async def service() -> AsyncIterator[ChatService]:
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    yield service
    await service.store.close()


@pytest.fixture
async def unary(service: ChatService) -> AsyncIterator[GrpcServer]:
    server = await start_unary(service, "127.0.0.1", 0)
    yield server
    await server.close()


@pytest.fixture
async def stub(unary: GrpcServer) -> AsyncIterator[chat_pb2_grpc.ChatStub]:
    host, port = unary.address
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
        yield chat_pb2_grpc.ChatStub(channel)


@pytest.fixture
async def streams(service: ChatService) -> AsyncIterator[ChatStreamServer]:
    server = await start_stream(service, "127.0.0.1", 0)
    yield server
    await server.close()


@pytest.fixture
async def channel(streams: ChatStreamServer) -> AsyncIterator[grpc.aio.Channel]:
    host, port = streams.address
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
        yield channel


# -- gRPC unary ----------------------------------------------------------------------------------
async def test_resume_logs_in_again_with_the_same_token_and_its_pending_messages(
    stub: chat_pb2_grpc.ChatStub,
) -> None:
    me, friend = name(), name()
    async with asyncio.timeout(WAIT):
        first = await stub.Signup(pb.SignupRequest(username=me, password=PASSWORD))
        assert len(first.resume_token) == 43 and first.resume_token != first.session_token
        # The client loses its session token (as after a server restart) and comes back
        # with the resume token alone, on a call without one.
        other = await stub.Signup(pb.SignupRequest(username=friend, password=PASSWORD))
        await stub.Send(
            pb.SendRequest(recipients=[me], body="while you were away"),
            metadata=as_(other.session_token),
        )
        again = await stub.Resume(pb.ResumeRequest(resume_token=first.resume_token))
        assert (again.username, again.pending, again.resume_token) == (
            me,
            1,
            first.resume_token,
        )
        assert again.session_token not in ("", first.session_token)
        events = stub.SubscribeEvents(pb.SubscribeRequest(), metadata=as_(again.session_token))
        event = await events.read()
        assert (event.delivery.sender, event.delivery.body) == (friend, "while you were away")
        events.cancel()
        # A Resume on a logged-in session is refused as a Login would be.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Resume(
                pb.ResumeRequest(resume_token=first.resume_token),
                metadata=as_(other.session_token),
            )
        assert status(caught.value) == (grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_LOGGED_IN")


async def test_an_unknown_or_revoked_token_is_resume_refused(
    service: ChatService, stub: chat_pb2_grpc.ChatStub
) -> None:
    me = name()
    async with asyncio.timeout(WAIT):
        for token in ("", "not-a-token", "x" * 43, "y" * 10_000):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Resume(pb.ResumeRequest(resume_token=token))
            assert status(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "RESUME_REFUSED")
            assert "log in with your password" in (caught.value.details() or "")
        reply = await stub.Signup(pb.SignupRequest(username=me, password=PASSWORD))
        await stub.Logout(pb.LogoutRequest(), metadata=as_(reply.session_token))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Resume(pb.ResumeRequest(resume_token=reply.resume_token))
        assert status(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "RESUME_REFUSED")
        # A refused Resume sent with the token of a logged-out session ends that session,
        # as a failed Login does.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Resume(
                pb.ResumeRequest(resume_token=reply.resume_token),
                metadata=as_(reply.session_token),
            )
        assert status(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "RESUME_REFUSED")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListAccounts(pb.ListAccountsRequest(), metadata=as_(reply.session_token))
        assert status(caught.value)[0] is grpc.StatusCode.UNAUTHENTICATED
        assert service.live_sessions(me) == 0


async def test_change_password_ends_the_other_sessions_and_their_tokens(
    service: ChatService, stub: chat_pb2_grpc.ChatStub
) -> None:
    me = name()
    async with asyncio.timeout(WAIT):
        here = await stub.Signup(pb.SignupRequest(username=me, password=PASSWORD))
        there = await stub.Login(pb.LoginRequest(username=me, password=PASSWORD))
        events = stub.SubscribeEvents(pb.SubscribeRequest(), metadata=as_(there.session_token))
        await events.wait_for_connection()

        # Refusals change nothing and end nothing.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ChangePassword(
                pb.ChangePasswordRequest(old_password="wrong-one", new_password=NEW_PASSWORD),
                metadata=as_(here.session_token),
            )
        assert status(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "AUTH_FAILED")
        for weak in ("short", "password123"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ChangePassword(
                    pb.ChangePasswordRequest(old_password=PASSWORD, new_password=weak),
                    metadata=as_(here.session_token),
                )
            assert status(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "WEAK_PASSWORD")
        assert service.live_sessions(me) == 2

        changed = await stub.ChangePassword(
            pb.ChangePasswordRequest(
                old_password=PASSWORD, new_password=NEW_PASSWORD, end_other_sessions=True
            ),
            metadata=as_(here.session_token),
        )
        assert changed.sessions_ended == 1 and len(changed.resume_token) == 43
        assert changed.resume_token not in (here.resume_token, there.resume_token)

        # The other session's stream ends, and so does every later call with its token.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await events.read()
        assert status(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "PASSWORD_CHANGED")
        assert (
            caught.value.details() == "session ended: the password was changed in another session"
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListAccounts(pb.ListAccountsRequest(), metadata=as_(there.session_token))
        assert status(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "PASSWORD_CHANGED")

        # This session goes on; the old tokens are revoked, the new one works.
        await stub.ListAccounts(pb.ListAccountsRequest(), metadata=as_(here.session_token))
        for old in (here.resume_token, there.resume_token):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Resume(pb.ResumeRequest(resume_token=old))
            assert status(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "RESUME_REFUSED")
        resumed = await stub.Resume(pb.ResumeRequest(resume_token=changed.resume_token))
        assert resumed.username == me
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Login(pb.LoginRequest(username=me, password=PASSWORD))
        assert status(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "AUTH_FAILED")
        assert (await stub.Login(pb.LoginRequest(username=me, password=NEW_PASSWORD))).username


async def test_change_password_may_leave_the_other_sessions_alone(
    service: ChatService, stub: chat_pb2_grpc.ChatStub
) -> None:
    me = name()
    async with asyncio.timeout(WAIT):
        here = await stub.Signup(pb.SignupRequest(username=me, password=PASSWORD))
        there = await stub.Login(pb.LoginRequest(username=me, password=PASSWORD))
        changed = await stub.ChangePassword(
            pb.ChangePasswordRequest(old_password=PASSWORD, new_password=NEW_PASSWORD),
            metadata=as_(here.session_token),
        )  # end_other_sessions left out: false on the wire
        assert changed.sessions_ended == 0
        await stub.ListAccounts(pb.ListAccountsRequest(), metadata=as_(there.session_token))
        assert service.live_sessions(me) == 2


async def test_delete_account_needs_the_password(
    service: ChatService, stub: chat_pb2_grpc.ChatStub
) -> None:
    me = name()
    async with asyncio.timeout(WAIT):
        reply = await stub.Signup(pb.SignupRequest(username=me, password=PASSWORD))
        for password in ("", "wrong-password"):  # "": what a client from before sends
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.DeleteAccount(
                    pb.DeleteAccountRequest(username=me, password=password),
                    metadata=as_(reply.session_token),
                )
            assert status(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "AUTH_FAILED")
            assert "password" in (caught.value.details() or "")
        assert service.live_sessions(me) == 1  # still logged in, nothing deleted
        await stub.DeleteAccount(
            pb.DeleteAccountRequest(username=me, password=PASSWORD),
            metadata=as_(reply.session_token),
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Resume(pb.ResumeRequest(resume_token=reply.resume_token))
        assert status(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "RESUME_REFUSED")


async def test_weak_password_at_signup(stub: chat_pb2_grpc.ChatStub) -> None:
    async with asyncio.timeout(WAIT):
        for weak, sentence in (("1234567", "at least 8"), ("Password1", "common")):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Signup(pb.SignupRequest(username=name(), password=weak))
            assert status(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "WEAK_PASSWORD")
            assert sentence in (caught.value.details() or "")


# -- grpc-stream ---------------------------------------------------------------------------------
def connect(channel: grpc.aio.Channel) -> Any:
    return channel.stream_stream(
        METHOD,
        request_serializer=pb.ClientMessage.SerializeToString,
        response_deserializer=pb.ServerMessage.FromString,
    )()


async def ask(call: Any, request_id: int = 1, **request: Any) -> pb.ServerMessage:
    """Write one request, read until its reply (pushes in between are skipped)."""
    await call.write(pb.ClientMessage(request_id=request_id, **request))
    while True:
        message = await call.read()
        assert message is not grpc.aio.EOF
        if message.request_id == request_id:
            return message


async def ended(call: Any) -> tuple[grpc.StatusCode, str | None]:
    try:
        while await call.read() is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError:
        pass
    return await call.code(), dict(await call.trailing_metadata() or ()).get(ERROR_KEY)


async def test_stream_resume_change_password_and_delete(
    service: ChatService, channel: grpc.aio.Channel
) -> None:
    me = name()
    async with asyncio.timeout(WAIT):
        first, second = connect(channel), connect(channel)
        signed = await ask(first, signup=pb.SignupRequest(username=me, password=PASSWORD))
        token = signed.logged_in.resume_token
        assert signed.logged_in.session_token == "" and len(token) == 43
        resumed = await ask(second, 2, resume=pb.ResumeRequest(resume_token=token, notices=True))
        assert resumed.WhichOneof("message") == "logged_in"
        assert (resumed.logged_in.username, resumed.logged_in.resume_token) == (me, token)

        wrong = await ask(
            first,
            3,
            change_password=pb.ChangePasswordRequest(
                old_password="nope-nope", new_password=NEW_PASSWORD
            ),
        )
        assert wrong.error.reason == pb.AUTH_FAILED
        weak = await ask(
            first,
            4,
            change_password=pb.ChangePasswordRequest(old_password=PASSWORD, new_password="short"),
        )
        assert weak.error.reason == pb.WEAK_PASSWORD
        changed = await ask(
            first,
            5,
            change_password=pb.ChangePasswordRequest(
                old_password=PASSWORD, new_password=NEW_PASSWORD, end_other_sessions=True
            ),
        )
        assert changed.WhichOneof("message") == "password_changed"
        assert changed.password_changed.sessions_ended == 1
        assert await ended(second) == (grpc.StatusCode.UNAUTHENTICATED, "PASSWORD_CHANGED")

        refused = connect(channel)
        no = await ask(refused, 6, resume=pb.ResumeRequest(resume_token=token))
        assert no.error.reason == pb.RESUME_REFUSED and "password" in no.error.message
        assert await ended(refused) == (grpc.StatusCode.UNAUTHENTICATED, "LOGIN_FAILED")

        no_password = await ask(first, 7, delete_account=pb.DeleteAccountRequest(username=me))
        assert no_password.error.reason == pb.AUTH_FAILED
        assert service.live_sessions(me) == 1
        deleted = await ask(
            first, 8, delete_account=pb.DeleteAccountRequest(username=me, password=NEW_PASSWORD)
        )
        assert deleted.WhichOneof("message") == "deleted"
        assert await ended(first) == (grpc.StatusCode.UNAUTHENTICATED, "ACCOUNT_DELETED")
