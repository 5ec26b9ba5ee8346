"""Session lifetimes on the gRPC server, in-process so the session table can be watched:
idle expiry, slow consumers, and what close() tells subscribed clients."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from core import ChatService, HashCost, SqliteStore, limits
from core.types import CloseReason
from tests.conftest import suite_guard
from transports.grpc import GrpcServer, GrpcTransport, open_client, start_server
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._generated import chat_pb2_grpc
from transports.grpc._wire import ERROR_KEY, SESSION_KEY

WAIT = 10.0
IDLE = 0.2  # seconds: a short idle timeout, so expiry happens within the test


#: 1 kB messages the core's queue holds for one session before it ends it as too slow: its
#: count or its byte bound, whichever comes first.
QUEUE_HOLDS = min(
    limits.MAX_SESSION_QUEUE, limits.MAX_SESSION_QUEUE_BYTES // (1000 + limits.QUEUE_ITEM_OVERHEAD)
)


def name() -> str:
    return "s" + uuid.uuid4().hex[:12]


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def service() -> AsyncIterator[ChatService]:
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    yield service
    await service.store.close()


@pytest.fixture
async def server(service: ChatService) -> AsyncIterator[GrpcServer]:
    server = await start_server(service, "127.0.0.1", 0, idle_timeout=IDLE, guard=suite_guard())
    yield server
    await server.close()


@pytest.fixture
async def stub(server: GrpcServer) -> AsyncIterator[chat_pb2_grpc.ChatStub]:
    host, port = server.address
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
        yield chat_pb2_grpc.ChatStub(channel)


async def signup(stub: chat_pb2_grpc.ChatStub, username: str) -> tuple[tuple[str, str], ...]:
    reply = await stub.Signup(pb.SignupRequest(username=username, password="pw-secret-1"))
    return ((SESSION_KEY, reply.session_token),)


async def test_a_session_that_never_subscribes_expires(
    service: ChatService, server: GrpcServer, stub: chat_pb2_grpc.ChatStub
) -> None:
    me = name()
    metadata = await signup(stub, me)
    assert service.live_sessions(me) == 1
    await until(lambda: service.live_sessions(me) == 0, "the idle session to expire")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListAccounts(pb.ListAccountsRequest(), metadata=metadata)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert dict(caught.value.trailing_metadata())[ERROR_KEY] == "UNKNOWN_SESSION"


async def test_a_logged_out_session_expires_too(
    server: GrpcServer, stub: chat_pb2_grpc.ChatStub
) -> None:
    metadata = await signup(stub, name())
    await stub.Logout(pb.LogoutRequest(), metadata=metadata)
    assert len(server.sessions) == 1  # kept for a later Login with the same token
    await until(lambda: len(server.sessions) == 0, "the anonymous session to expire")


async def test_a_subscribed_session_outlives_the_idle_timeout(
    service: ChatService, server: GrpcServer
) -> None:
    bob = name()
    async with open_client(server.address) as client:
        await client.signup(bob, "pw-secret-1")
        for _ in range(3):  # several sweeps, no rpc from bob
            await asyncio.sleep(IDLE)
        assert service.live_sessions(bob) == 1
        async with open_client(server.address) as alice:
            await alice.signup(name(), "pw-secret-1")
            sent = await alice.send([bob], "still there?")
        assert (await client.next_message(WAIT)).message_id == sent.message_id


# A client whose stream window is small and never grows, so that not reading stalls the
# server's writes after a few messages (grpc's default BDP probing would let megabytes through).
STINGY_CLIENT = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384))


async def flood_until_cut_off(service: ChatService, victim: str) -> int:
    """Send 1 kB messages to ``victim``, letting the server write between sends, until the
    core cuts it off as too slow; returns how many were sent."""
    sender = service.open_session()
    await service.signup(sender, name(), "pw-secret-1")
    for sent in range(1, limits.MAX_SESSION_QUEUE * 2):
        await service.send(sender, [victim], "x" * 1000)
        if service.live_sessions(victim) == 0:
            return sent
        await asyncio.sleep(0)
    raise AssertionError("the consumer was never cut off")


async def test_a_slow_consumer_is_cut_off_and_loses_nothing(service: ChatService) -> None:
    """A subscriber that stops reading: HTTP/2 flow control stalls our writes, its queue in
    the core fills to MAX_SESSION_QUEUE, the core ends the session, and when the client reads
    again its stream ends with UNAUTHENTICATED (SLOW_CONSUMER), and so does every later call
    with its token: not RESOURCE_EXHAUSTED, which would invite retries that cannot succeed.
    Everything stays pending."""
    server = await start_server(
        service, "127.0.0.1", 0, guard=suite_guard()
    )  # no sweeps during the test
    host, port = server.address
    slow = name()
    try:
        async with grpc.aio.insecure_channel(f"{host}:{port}", options=STINGY_CLIENT) as channel:
            stub = chat_pb2_grpc.ChatStub(channel)
            token = await signup(stub, slow)
            stream = stub.Subscribe(pb.SubscribeRequest(), metadata=token)
            await stream.wait_for_connection()
            sent = await flood_until_cut_off(service, slow)
            assert sent > QUEUE_HOLDS
            received = 0
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async with asyncio.timeout(WAIT):
                    async for _ in stream:
                        received += 1
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert dict(caught.value.trailing_metadata())[ERROR_KEY] == "SLOW_CONSUMER"
            assert received < sent - QUEUE_HOLDS  # only what got through
            with pytest.raises(grpc.aio.AioRpcError) as later:
                await stub.ListAccounts(pb.ListAccountsRequest(), metadata=token)
            assert later.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert dict(later.value.trailing_metadata())[ERROR_KEY] == "SLOW_CONSUMER"
    finally:
        await server.close()
    again = service.open_session()
    assert (
        await service.login(again, slow, "pw-secret-1")
    ).pending == sent  # nothing acked, all kept


async def test_closing_the_server_tells_subscribers_it_is_shutting_down(
    service: ChatService,
) -> None:
    server = await start_server(service, "127.0.0.1", 0, guard=suite_guard())
    client = open_client(server.address)
    try:
        await client.connect()
        await client.signup(name(), "pw-secret-1")
        await server.close()
        with pytest.raises(ConnectionError):
            await client.next_message(WAIT)
        assert client.closed_reason == CloseReason.SHUTDOWN.value
    finally:
        await client.close()
        await server.close()


async def test_a_stream_stuck_on_a_client_that_never_reads_is_cancelled(
    service: ChatService, server: GrpcServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="transports.grpc")
    host, port = server.address
    async with grpc.aio.insecure_channel(f"{host}:{port}", options=STINGY_CLIENT) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        stuck = name()
        stream = stub.Subscribe(pb.SubscribeRequest(), metadata=await signup(stub, stuck))
        await stream.wait_for_connection()
        await flood_until_cut_off(service, stuck)
        # Our handler is blocked writing to a client that reads nothing: the sweep cancels
        # it and forgets the token (the sender's session is not in the gRPC table).
        await until(lambda: len(server.sessions) == 0, "the stuck stream to be cancelled")
        assert "cancelling the stuck stream" in caplog.text
        stream.cancel()


# -- the client's side: which stream speaks for the session -----------------------------------
class FailedStream:
    """Stands in for a Subscribe call whose status arrives late: reading it raises that status."""

    def __init__(self, code: grpc.StatusCode, reason: str | None) -> None:
        trailing = grpc.aio.Metadata(*(((ERROR_KEY, reason),) if reason else ()))
        self.error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, "late status")

    def __aiter__(self) -> FailedStream:
        return self

    async def __anext__(self) -> pb.Delivery:
        raise self.error

    def cancel(self) -> bool:
        return False


async def test_only_the_current_logins_stream_can_end_the_client(server: GrpcServer) -> None:
    """A stream's end is news about the login that opened it, not about a later one: the
    stream of a login the client has since logged out of may fail however it likes."""
    me = name()
    async with open_client(server.address) as client:
        transport = client.transport
        assert isinstance(transport, GrpcTransport)
        await client.signup(me, "pw-secret-1")
        first = transport._generation
        await client.logout()
        await client.login(me, "pw-secret-1")
        for late in (
            FailedStream(grpc.StatusCode.UNAVAILABLE, None),  # looks like the server went away
            FailedStream(grpc.StatusCode.UNAUTHENTICATED, "NOT_LOGGED_IN"),  # a late refusal
            FailedStream(grpc.StatusCode.UNAUTHENTICATED, "DISCONNECTED"),
        ):
            await transport._run_pump(late, first)  # type: ignore[arg-type]
            assert client.closed_reason is None
        assert (await client.list_accounts(me)).usernames == (me,)

        # A refusal that leaves the session alive does not end the current login either ...
        refused = FailedStream(grpc.StatusCode.UNAUTHENTICATED, "NOT_LOGGED_IN")
        await transport._run_pump(refused, transport._generation)  # type: ignore[arg-type]
        assert client.closed_reason is None
        # ... but the current stream breaking does: the server drops such a session.
        broken = FailedStream(grpc.StatusCode.UNAVAILABLE, None)
        await transport._run_pump(broken, transport._generation)  # type: ignore[arg-type]
        assert client.closed_reason == CloseReason.DISCONNECTED.value
        with pytest.raises(ConnectionError):  # a lost connection, not a refusal
            await client.list_accounts(me)
