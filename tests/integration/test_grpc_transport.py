"""The gRPC transport against a real `wirechat server` process: our client, raw stubs, tooling.

Negative tests use raw stubs where our client would refuse to send the bad request, and each
ends by checking the server still serves everyone else.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from core import ChatClient, limits
from core.errors import (
    AlreadyLoggedIn,
    AuthFailed,
    InvalidArgument,
    LimitExceeded,
    NotLoggedIn,
    SessionClosed,
    UsernameTaken,
)
from core.types import CloseReason
from transports.grpc import GrpcTransport, open_client
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._generated import chat_pb2_grpc
from transports.grpc._wire import ERROR_KEY, MAX_MESSAGE_BYTES, SESSION_KEY
from wirechat.launch import ServerProcess

WAIT = 10.0  # seconds: the bound on waiting for any one push; never reached when all is well

Address = tuple[str, int]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(["grpc"], tmp_path_factory.mktemp("grpc") / "db.sqlite").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def address(server: ServerProcess) -> Address:
    return server.addresses["grpc"]


@pytest.fixture
async def stub(address: Address) -> AsyncIterator[chat_pb2_grpc.ChatStub]:
    """Raw generated stub on a channel with no client-side size limit."""
    async with grpc.aio.insecure_channel(target(address)) as channel:
        yield chat_pb2_grpc.ChatStub(channel)


def target(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def name() -> str:
    return "u" + uuid.uuid4().hex[:12]


async def user(address: Address, username: str | None = None) -> ChatClient:
    client = open_client(address)
    await client.connect()
    await client.signup(username or name(), "pw-secret-1")
    return client


def transport_of(client: ChatClient) -> GrpcTransport:
    """The gRPC transport under a client, for what only tools see (the token, the stub)."""
    assert isinstance(client.transport, GrpcTransport)
    return client.transport


def error_reason(err: grpc.aio.AioRpcError) -> str | None:
    return dict(err.trailing_metadata() or ()).get(ERROR_KEY)


async def assert_server_serves(address: Address) -> None:
    """Two fresh users can still chat: whatever the test did harmed no one else."""
    alice, bob = name(), name()
    a, b = await user(address, alice), await user(address, bob)
    try:
        sent = await a.send([bob], "still here")
        got = await b.next_message(WAIT)
        assert (got.message_id, got.sender, got.body) == (sent.message_id, alice, "still here")
    finally:
        await a.close()
        await b.close()


# -- happy path --------------------------------------------------------------------------------
async def test_happy_path_two_users_chat(address: Address) -> None:
    tag = name()
    alice, bob = f"{tag}.alice", f"{tag}.bob"
    async with open_client(address) as a, open_client(address) as b:
        assert (await a.signup(alice, "pw-secret-1")).username == alice
        assert (await b.signup(bob, "pw-secret-1")).pending == 0

        sent = await a.send([bob, "nobody-here"], "hello, bob")
        assert sent.message_id > 0 and sent.unknown_recipients == ("nobody-here",)
        got = await b.next_message(WAIT)
        assert (got.message_id, got.sender, got.body, got.sent_at_ms) == (
            sent.message_id, alice, "hello, bob", sent.sent_at_ms,
        )  # fmt: skip

        reply = await b.send([alice], "héllo 👋")
        assert (await a.next_message(WAIT)).body == "héllo 👋"
        assert reply.message_id > sent.message_id

        page = await a.list_accounts(f"{tag}.*", "", 0)
        assert page.usernames == (alice, bob) and not page.more
        first = await a.list_accounts(f"{tag}.*", "", 1)
        assert (first.usernames, first.more) == ((alice,), True)
        rest = await a.list_accounts(f"{tag}.*", alice, 1)
        assert (rest.usernames, rest.more) == ((bob,), False)

        await b.logout()  # bob away: messages wait for him
        later = [(await a.send([bob], f"later {i}")).message_id for i in range(3)]
        assert (await b.login(bob, "pw-secret-1")).pending == 3
        got = [await b.next_message(WAIT) for _ in later]  # oldest first (Rule 12)
        assert [(m.message_id, m.body) for m in got] == [
            (mid, f"later {i}") for i, mid in enumerate(later)
        ]

    async with open_client(address) as b2:  # everything was acked on the way
        assert (await b2.login(bob, "pw-secret-1")).pending == 0
        await b2.delete_account(bob, "pw-secret-1")
        assert b2.closed_reason == CloseReason.ACCOUNT_DELETED.value
        with pytest.raises(SessionClosed):
            await b2.send([alice], "gone")


async def test_every_device_of_a_user_gets_the_push(address: Address) -> None:
    bob = name()
    sender = await user(address)
    phone, laptop = await user(address, bob), open_client(address)
    try:
        await laptop.connect()
        await laptop.login(bob, "pw-secret-1")
        sent = await sender.send([bob], "to both")
        assert (await phone.next_message(WAIT)).message_id == sent.message_id
        assert (await laptop.next_message(WAIT)).message_id == sent.message_id
    finally:
        for client in (sender, phone, laptop):
            await client.close()


async def test_deleting_the_account_ends_the_other_devices_stream(address: Address) -> None:
    bob = name()
    phone = await user(address, bob)
    laptop = open_client(address)
    try:
        await laptop.connect()
        await laptop.login(bob, "pw-secret-1")
        await phone.delete_account(bob, "pw-secret-1")
        with pytest.raises(ConnectionError, match="deleted"):
            await laptop.next_message(WAIT)
        assert laptop.closed_reason == CloseReason.ACCOUNT_DELETED.value
        with pytest.raises(SessionClosed, match="deleted"):
            await laptop.list_accounts()
    finally:
        await phone.close()
        await laptop.close()


# -- sessions and errors through our client ------------------------------------------------------
async def test_connect_to_nothing_is_an_oserror() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = open_client(("127.0.0.1", port))
    with pytest.raises(OSError):
        await client.connect()
    await client.close()


async def test_commands_before_login_are_not_logged_in(address: Address) -> None:
    async with open_client(address) as client:
        with pytest.raises(NotLoggedIn):
            await client.send(["anyone"], "hi")
        with pytest.raises(NotLoggedIn):
            await client.list_accounts()
        with pytest.raises(NotLoggedIn):
            await client.ack([1])
        await client.signup(name(), "pw-secret-1")  # a rejected command does not spoil the session
        await client.list_accounts()


async def test_failed_login_issues_no_session_and_spends_the_client(address: Address) -> None:
    taken = name()
    await (await user(address, taken)).close()
    async with open_client(address) as client:
        with pytest.raises(AuthFailed):
            await client.login(taken, "wrong")
        assert transport_of(client).token is None
        assert client.closed_reason == CloseReason.AUTH_FAILED.value
        with pytest.raises(SessionClosed):  # Rule 4: reconnect, as with the custom protocol
            await client.login(taken, "pw-secret-1")
    async with open_client(address) as client:
        with pytest.raises(UsernameTaken):
            await client.signup(taken, "pw-secret-1")
        with pytest.raises(SessionClosed):
            await client.signup(name(), "pw-secret-1")
    async with open_client(address) as client:
        await client.login(taken, "pw-secret-1")  # a fresh client is fine
        with pytest.raises(AlreadyLoggedIn):
            await client.login(taken, "pw-secret-1")
        await client.list_accounts()  # ALREADY_LOGGED_IN left the session alone


async def test_logout_and_login_again_many_times_on_one_client(address: Address) -> None:
    """One client cycles signup/logout/login/logout with sends between (the bench's loop):
    every login gets a stream of its own, and no logout ends the client."""
    tag = name()
    async with open_client(address) as client, open_client(address) as peer:
        await peer.signup(f"{tag}.peer", "pw-secret-1")
        for i in range(30):
            me = f"{tag}.{i}"
            await client.signup(me, "pw-secret-1")
            sent = await peer.send([me], f"live {i}")
            assert (await client.next_message(WAIT)).message_id == sent.message_id
            await client.send([f"{tag}.peer"], f"from {i}")
            await client.logout()
            waiting = await peer.send([me], f"pending {i}")
            assert (await client.login(me, "pw-secret-1")).pending == 1
            assert (await client.next_message(WAIT)).message_id == waiting.message_id
            await client.logout()
        assert client.closed_reason is None
        bodies = [(await peer.next_message(WAIT)).body for _ in range(30)]
        assert bodies == [f"from {i}" for i in range(30)]


async def test_a_subscribe_that_arrives_after_a_logout_does_not_end_the_client(
    address: Address,
) -> None:
    """The race behind "SessionClosed right after a logout": the Subscribe a login opens reaches
    the server after the session was logged out, and is refused (NOT_LOGGED_IN). That says the
    session is logged out, not that it is gone. Forced here: a second channel logs the session
    out with its token between the Signup reply and the client's Subscribe."""
    me = name()
    async with open_client(address) as client, grpc.aio.insecure_channel(target(address)) as ch:
        other = chat_pb2_grpc.ChatStub(ch)
        stub = transport_of(client)._stub
        assert stub is not None
        signup = stub.Signup

        async def signup_then_logged_out(request: pb.SignupRequest, **kw: object) -> pb.LoginReply:
            reply = await signup(request, **kw)
            await other.Logout(pb.LogoutRequest(), metadata=((SESSION_KEY, reply.session_token),))
            return reply

        stub.Signup = signup_then_logged_out  # type: ignore[method-assign]
        await client.signup(me, "pw-secret-1")
        with pytest.raises(NotLoggedIn):  # the server's view: logged out, not ended
            await client.list_accounts()
        assert (
            await client.login(me, "pw-secret-1")
        ).pending == 0  # the same session logs in again
        sent = await client.send([me], "to myself")
        assert (await client.next_message(WAIT)).message_id == sent.message_id
        await client.logout()
        await client.login(me, "pw-secret-1")
        assert client.closed_reason is None


async def test_a_command_told_the_session_is_gone_ends_the_client(address: Address) -> None:
    """A unary call answered with a status that means "this session has ended" (here
    UNKNOWN_SESSION, as after a server restart) ends the client with that reason."""
    async with open_client(address) as client:
        await client.signup(name(), "pw-secret-1")
        transport = transport_of(client)
        transport._metadata = ((SESSION_KEY, "x" * 22),)  # a token the server never issued
        with pytest.raises(SessionClosed):
            await client.list_accounts()
        assert client.closed_reason == CloseReason.DISCONNECTED.value
        assert transport.token is None
        with pytest.raises(ConnectionError):  # and messages() has ended
            await client.next_message(WAIT)
        with pytest.raises(SessionClosed):
            await client.send([name()], "anyone?")


async def test_limits_give_clear_errors_and_the_server_carries_on(address: Address) -> None:
    client = await user(address)
    try:
        with pytest.raises(LimitExceeded, match=str(limits.MAX_BODY_BYTES)):
            await client.send([name()], "x" * (limits.MAX_BODY_BYTES + 1))
        with pytest.raises(LimitExceeded):  # refused by our channel before it is sent
            await client.send([name()], "x" * (MAX_MESSAGE_BYTES + 1))
        with pytest.raises(LimitExceeded):
            await client.send([f"r{i}" for i in range(limits.MAX_RECIPIENTS + 1)], "x")
        with pytest.raises(InvalidArgument):
            await client.send([], "nobody to send to")
        with pytest.raises(InvalidArgument):
            await client.list_accounts(limit=-1)
        assert (await client.send([name()], "fine")).unknown_recipients  # still usable
    finally:
        await client.close()
    await assert_server_serves(address)


# -- the wire, through raw stubs ---------------------------------------------------------------
async def test_missing_token_is_unauthenticated(stub: chat_pb2_grpc.ChatStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Send(pb.SendRequest(recipients=["a"], body="x"))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(caught.value) == "NOT_LOGGED_IN"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Subscribe(pb.SubscribeRequest()).read()
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_what_chat_proto_says_of_odd_names_and_passwords(
    stub: chat_pb2_grpc.ChatStub,
) -> None:
    """Settled in chat.proto: an empty password is WEAK_PASSWORD at Signup (under 8
    characters, issue 13) and AUTH_FAILED at Login; a recipient name that cannot be a username is an
    unknown recipient, not an error, up to 128 characters; beyond, LIMIT_EXCEEDED."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Signup(pb.SignupRequest(username=name(), password=""))
    assert (caught.value.code(), error_reason(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "WEAK_PASSWORD",
    )  # fmt: skip
    me = name()
    token = (await stub.Signup(pb.SignupRequest(username=me, password="pw-secret-1"))).session_token
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Login(pb.LoginRequest(username=me, password=""))
    assert (caught.value.code(), error_reason(caught.value)) == (
        grpc.StatusCode.UNAUTHENTICATED, "AUTH_FAILED",
    )  # fmt: skip
    odd = ["", "x" * 40, "a b", "y" * 128]
    reply = await stub.Send(
        pb.SendRequest(recipients=odd, body="hi"), metadata=((SESSION_KEY, token),)
    )
    assert (reply.message_id, list(reply.unknown_recipients)) == (0, odd)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Send(
            pb.SendRequest(recipients=["z" * 129], body="hi"), metadata=((SESSION_KEY, token),)
        )
    assert error_reason(caught.value) == "LIMIT_EXCEEDED"


async def test_a_deadline_on_subscribe_ends_the_session(stub: chat_pb2_grpc.ChatStub) -> None:
    """Settled in chat.proto: no deadline on Subscribe/SubscribeEvents; when one expires, the
    server sees the call cancelled, as when a client goes away, and closes the session."""
    reply = await stub.Signup(pb.SignupRequest(username=name(), password="pw-secret-1"))
    metadata = ((SESSION_KEY, reply.session_token),)
    stream = stub.SubscribeEvents(pb.SubscribeRequest(), metadata=metadata, timeout=0.3)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(WAIT):
            await stream.read()
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(int(WAIT / 0.05)):  # the server learns of the expiry a moment later
        try:
            await stub.ListAccounts(pb.ListAccountsRequest(), metadata=metadata)
        except grpc.aio.AioRpcError as err:
            assert err.code() is grpc.StatusCode.UNAUTHENTICATED
            assert error_reason(err) == "DISCONNECTED"
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the session outlived its stream's deadline")


async def test_forged_token_is_unauthenticated(
    stub: chat_pb2_grpc.ChatStub, address: Address
) -> None:
    real = (
        await stub.Signup(pb.SignupRequest(username=name(), password="pw-secret-1"))
    ).session_token
    forged = real[:-2] + ("AA" if real[-2:] != "AA" else "BB")
    for token in (forged, "x" * 22, ""):
        metadata = ((SESSION_KEY, token),)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListAccounts(pb.ListAccountsRequest(), metadata=metadata)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(caught.value) == "UNKNOWN_SESSION"
    ok = await stub.ListAccounts(pb.ListAccountsRequest(), metadata=((SESSION_KEY, real),))
    assert ok.usernames
    await assert_server_serves(address)


async def test_oversized_messages_are_refused(
    stub: chat_pb2_grpc.ChatStub, address: Address
) -> None:
    token = (
        await stub.Signup(pb.SignupRequest(username=name(), password="pw-secret-1"))
    ).session_token
    metadata = ((SESSION_KEY, token),)
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # over gRPC's max: gRPC refuses it
        await stub.Send(pb.SendRequest(recipients=["a"], body="x" * 200_000), metadata=metadata)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(caught.value) is None
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # under it, over the body limit
        body = "x" * (limits.MAX_BODY_BYTES + 1)
        await stub.Send(pb.SendRequest(recipients=["a"], body=body), metadata=metadata)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "LIMIT_EXCEEDED"
    assert "65536" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        ids = list(range(1, limits.MAX_ACK_IDS + 2))
        await stub.Ack(pb.AckRequest(message_ids=ids), metadata=metadata)
    assert error_reason(caught.value) == "LIMIT_EXCEEDED"
    assert await stub.Send(pb.SendRequest(recipients=["a"], body="ok"), metadata=metadata)
    await assert_server_serves(address)


async def test_malformed_protobuf_is_invalid_argument(address: Address) -> None:
    async with grpc.aio.insecure_channel(target(address)) as channel:
        send_bytes = channel.unary_unary("/wirechat.v1.Chat/Signup")
        for junk in (b"\x0a\x02\xff\xfe", b"\xff\xff\xff\xff", b"\x0a\x50short"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await send_bytes(junk)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert error_reason(caught.value) == "INVALID_ARGUMENT"
    await assert_server_serves(address)


async def test_a_second_subscribe_is_refused(stub: chat_pb2_grpc.ChatStub) -> None:
    me = name()
    token = (await stub.Signup(pb.SignupRequest(username=me, password="pw-secret-1"))).session_token
    metadata = ((SESSION_KEY, token),)
    first = stub.Subscribe(pb.SubscribeRequest(), metadata=metadata)
    await stub.Send(pb.SendRequest(recipients=[me], body="one"), metadata=metadata)
    assert (await first.read()).body == "one"  # the first stream is open
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Subscribe(pb.SubscribeRequest(), metadata=metadata).read()
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "ALREADY_SUBSCRIBED"
    await stub.Send(pb.SendRequest(recipients=[me], body="two"), metadata=metadata)
    assert (await first.read()).body == "two"  # and it is unharmed
    first.cancel()


# -- tooling -----------------------------------------------------------------------------------
async def test_reflection_lists_and_describes_the_service(address: Address) -> None:
    async with grpc.aio.insecure_channel(target(address)) as channel:
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="wirechat.v1.Chat"),
        ]
        answers = [answer async for answer in reflect.ServerReflectionInfo(iter(requests))]
    services = {s.name for s in answers[0].list_services_response.service}
    assert {"wirechat.v1.Chat", "grpc.health.v1.Health"} <= services
    proto = descriptor_pb2.FileDescriptorProto.FromString(
        answers[1].file_descriptor_response.file_descriptor_proto[0]
    )
    assert (proto.name, proto.package) == ("wirechat/v1/chat.proto", "wirechat.v1")
    methods = {m.name: m.server_streaming for m in proto.service[0].method}
    assert methods["Subscribe"] is True and methods["SubscribeEvents"] is True
    assert methods["Send"] is False and methods["ReadHistory"] is False and len(methods) == 15


async def test_health_is_serving(address: Address) -> None:
    async with grpc.aio.insecure_channel(target(address)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "wirechat.v1.Chat"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=WAIT)
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND


# -- shutdown ----------------------------------------------------------------------------------
async def test_shutdown_ends_streams_with_unavailable(tmp_path: Path) -> None:
    proc = ServerProcess(["grpc"], tmp_path / "db.sqlite").start()
    try:
        address = proc.addresses["grpc"]
        client = await user(address)
        async with grpc.aio.insecure_channel(target(address)) as channel:
            raw = chat_pb2_grpc.ChatStub(channel)
            me = name()
            token = (
                await raw.Signup(pb.SignupRequest(username=me, password="pw-secret-1"))
            ).session_token
            metadata = ((SESSION_KEY, token),)
            stream = raw.Subscribe(pb.SubscribeRequest(), metadata=metadata)
            await raw.Send(pb.SendRequest(recipients=[me], body="open"), metadata=metadata)
            assert (await stream.read()).body == "open"
            assert proc.stop() == 0
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stream.read()
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            assert error_reason(caught.value) == "SHUTDOWN"
        with pytest.raises(ConnectionError):
            await client.next_message(WAIT)
        assert client.closed_reason == CloseReason.SHUTDOWN.value
        await client.close()
    finally:
        proc.stop()
