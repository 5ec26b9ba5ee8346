"""The grpc-stream transport's own behaviour, in-process so the sessions can be watched:
pipelining, what ends a stream and how, devices, slow consumers, shutdown, bad input.

The raw calls use the generated messages and a bare ``stream_stream`` call, as chat.proto's
"The stream service" describes them; ``open_client`` is the product's client.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from core import ChatService, HashCost, LimitExceeded, SqliteStore, limits
from core import requests as rq
from core.types import CloseReason
from tests.conftest import suite_guard
from transports.grpc._errors import REASONS
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._wire import ERROR_KEY
from transports.grpc_stream import ChatStreamServer, open_client, start_server
from transports.grpc_stream import _server as server_module
from transports.grpc_stream._client import CODEC, METHOD, PUSHES, error_of

WAIT = 10.0
# A client whose stream window is small and never grows, so that not reading stalls the
# server's writes after a few messages (grpc's default BDP probing would let megabytes through).
STINGY_CLIENT = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384))


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
async def server(service: ChatService) -> AsyncIterator[ChatStreamServer]:
    server = await start_server(service, "127.0.0.1", 0, guard=suite_guard())
    yield server
    await server.close()


@pytest.fixture
async def channel(server: ChatStreamServer) -> AsyncIterator[grpc.aio.Channel]:
    host, port = server.address
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
        yield channel


def connect(channel: grpc.aio.Channel) -> Any:
    """A raw Connect call: write ClientMessages, read ServerMessages."""
    return channel.stream_stream(
        METHOD,
        request_serializer=pb.ClientMessage.SerializeToString,
        response_deserializer=pb.ServerMessage.FromString,
    )()


async def signed_up(call: Any, username: str, request_id: int = 1) -> pb.ServerMessage:
    await call.write(
        pb.ClientMessage(
            request_id=request_id,
            signup=pb.SignupRequest(username=username, password="pw-secret-1"),
        )
    )
    reply = await call.read()
    assert reply.WhichOneof("message") == "logged_in", reply
    return reply


async def ended(call: Any) -> tuple[grpc.StatusCode, str | None, list[pb.ServerMessage]]:
    """Read the call to its end: its status code, its wirechat-error, what came before."""
    before = []
    try:
        async with asyncio.timeout(WAIT):
            while (message := await call.read()) is not grpc.aio.EOF:
                before.append(message)
    except grpc.aio.AioRpcError:
        pass
    trailing = dict(await call.trailing_metadata() or ())
    return await call.code(), trailing.get(ERROR_KEY), before


# -- the tables agree with chat.proto and core ---------------------------------------------------
def oneof_fields(message: Any, oneof: str) -> set[str]:
    return {f.name for f in message.DESCRIPTOR.oneofs_by_name[oneof].fields}


def test_every_request_of_chat_proto_has_a_handler_and_a_core_request() -> None:
    requests = oneof_fields(pb.ClientMessage, "request")
    assert set(server_module.HANDLERS) == requests
    carried = {*CODEC, rq.Ack}
    assert carried <= {getattr(rq, name) for name in rq.__all__}
    assert len(carried) == len(requests)
    replies = oneof_fields(pb.ServerMessage, "message")
    assert {field for _, field, _ in CODEC.values()} == replies - {"error"} - PUSHES
    assert PUSHES <= replies


def test_the_byte_examples_in_chat_proto_are_what_protobuf_writes() -> None:
    proto = Path(server_module.__file__).parents[1].joinpath("grpc", "chat.proto").read_text()
    lines = [line.strip(" /") for line in proto.splitlines()]
    send = pb.ClientMessage(request_id=1, send=pb.SendRequest(recipients=["bob"], body="hi"))
    push = pb.ServerMessage(delivery=pb.Delivery(message_id=5, sender="alice", body="hi"))
    for message in (send, push):
        wire = message.SerializeToString()
        shown = next(line for line in lines if line.replace(" ", "") == wire.hex())
        assert type(message).FromString(bytes.fromhex(shown)) == message
    prefix = b"\0" + len(send.SerializeToString()).to_bytes(4, "big")
    assert f"prefix {prefix.hex(' ')})" in proto


@pytest.mark.parametrize("reason", REASONS, ids=lambda r: r.name)
def test_each_error_reason_round_trips_through_a_stream_error(reason: Any) -> None:
    error = pb.StreamError(reason=pb.ErrorReason.Value(reason.name), message="why")
    back = error_of(pb.StreamError.FromString(error.SerializeToString()))
    assert type(back) is reason.error and str(back) == "why"


# -- pipelining --------------------------------------------------------------------------------
async def test_pipelined_requests_are_answered_in_order_with_their_ids(
    service: ChatService, channel: grpc.aio.Channel
) -> None:
    me = name()
    call = connect(channel)
    await signed_up(call, me)
    ids = [9, 3, 200_000, 0, 7]  # any ids, in any order, even 0: the server only echoes them
    for i, rid in enumerate(ids):
        await call.write(
            pb.ClientMessage(request_id=rid, send=pb.SendRequest(recipients=["x"], body=f"#{i}"))
        )
    await call.write(pb.ClientMessage(request_id=42, list_accounts=pb.ListAccountsRequest()))
    replies = [await call.read() for _ in range(len(ids) + 1)]
    assert [r.request_id for r in replies] == [*ids, 42]
    assert [r.WhichOneof("message") for r in replies] == ["sent"] * len(ids) + ["accounts"]
    assert replies[-1].accounts.usernames == [me]
    call.cancel()


async def test_a_client_pipelining_many_sends_gets_each_its_own_reply(
    server: ChatStreamServer,
) -> None:
    alice, bob = name(), name()
    async with open_client(server.address) as a, open_client(server.address) as b:
        await a.signup(alice, "pw-secret-1")
        await b.signup(bob, "pw-secret-1")
        results = await asyncio.gather(*(a.send([bob], f"#{i}") for i in range(100)))
        # Requests went out in call order; each reply reached its own caller.
        assert [r.message_id for r in results] == sorted(r.message_id for r in results)
        bodies = [(await b.next_message(WAIT)).body for _ in range(100)]
        assert bodies == [f"#{i}" for i in range(100)]


async def test_a_request_the_server_does_not_know_is_refused_and_the_session_goes_on(
    channel: grpc.aio.Channel,
) -> None:
    call = connect(channel)
    await signed_up(call, name())
    await call.write(pb.ClientMessage(request_id=5))  # no request set (say, a newer client's)
    reply = await call.read()
    assert (reply.request_id, reply.WhichOneof("message")) == (5, "error")
    assert reply.error.reason == pb.INVALID_ARGUMENT
    await call.write(pb.ClientMessage(request_id=6, list_accounts=pb.ListAccountsRequest()))
    assert (await call.read()).WhichOneof("message") == "accounts"
    call.cancel()


async def test_a_failed_ack_is_answered_with_an_error_and_a_good_one_not_at_all(
    channel: grpc.aio.Channel,
) -> None:
    call = connect(channel)
    await signed_up(call, name())
    await call.write(pb.ClientMessage(request_id=3, ack=pb.AckRequest(message_ids=[1, 2])))
    too_many = list(range(1, limits.MAX_ACK_IDS + 2))
    await call.write(pb.ClientMessage(request_id=4, ack=pb.AckRequest(message_ids=too_many)))
    reply = await call.read()  # the first ack got no reply: this is the second's
    assert (reply.request_id, reply.error.reason) == (4, pb.LIMIT_EXCEEDED)
    assert str(limits.MAX_ACK_IDS) in reply.error.message
    call.cancel()


# -- what ends a stream ------------------------------------------------------------------------
async def test_cancelling_the_stream_ends_the_session(
    service: ChatService, server: ChatStreamServer, channel: grpc.aio.Channel
) -> None:
    me = name()
    call = connect(channel)
    await signed_up(call, me)
    assert service.live_sessions(me) == 1
    call.cancel()
    await until(lambda: service.live_sessions(me) == 0, "the session to close")
    await until(lambda: not server.streams, "the stream to be forgotten")


async def test_closing_the_client_acks_first_then_ends_the_session(
    service: ChatService, server: ChatStreamServer
) -> None:
    alice, bob = name(), name()
    async with open_client(server.address) as a:
        await a.signup(alice, "pw-secret-1")
        async with open_client(server.address) as b:
            await b.signup(bob, "pw-secret-1")
            await a.send([bob], "hello")
            await b.next_message(WAIT)  # auto-acked: queued, not answered
        # b's close() half-closed after its ack: the server handled it, then ended the session
        assert service.live_sessions(bob) == 0
        again = service.open_session()
        assert (await service.login(again, bob, "pw-secret-1")).pending == 0


async def test_half_closing_ends_the_call_with_ok_after_every_reply(
    service: ChatService, channel: grpc.aio.Channel
) -> None:
    me = name()
    call = connect(channel)
    await signed_up(call, me)
    await call.write(pb.ClientMessage(request_id=2, list_accounts=pb.ListAccountsRequest()))
    await call.done_writing()
    code, reason, before = await ended(call)
    assert (code, reason) == (grpc.StatusCode.OK, None)
    assert [m.request_id for m in before] == [2]
    assert service.live_sessions(me) == 0


async def test_a_second_device_gets_every_message_and_outlives_the_first(
    service: ChatService, server: ChatStreamServer
) -> None:
    me, peer = name(), name()
    async with open_client(server.address) as sender:
        await sender.signup(peer, "pw-secret-1")
        laptop = open_client(server.address)
        phone = open_client(server.address)
        async with laptop, phone:
            await laptop.signup(me, "pw-secret-1")
            await phone.login(me, "pw-secret-1")
            assert service.live_sessions(me) == 2
            await sender.send([me], "to both")
            assert (await laptop.next_message(WAIT)).body == "to both"
            assert (await phone.next_message(WAIT)).body == "to both"
            await laptop.close()
            await until(lambda: service.live_sessions(me) == 1, "the laptop's session to end")
            await sender.send([me], "phone only")
            assert (await phone.next_message(WAIT)).body == "phone only"


async def test_a_deleted_account_ends_every_stream_with_account_deleted(
    service: ChatService, channel: grpc.aio.Channel
) -> None:
    me = name()
    deleting, *others = [connect(channel) for _ in range(3)]
    await signed_up(deleting, me)
    for call in others:
        await call.write(
            pb.ClientMessage(
                request_id=1, login=pb.LoginRequest(username=me, password="pw-secret-1")
            )
        )
        assert (await call.read()).WhichOneof("message") == "logged_in"
    await deleting.write(
        pb.ClientMessage(
            request_id=8,
            delete_account=pb.DeleteAccountRequest(username=me, password="pw-secret-1"),
        )
    )
    code, reason, before = await ended(deleting)
    assert [(m.request_id, m.WhichOneof("message")) for m in before] == [(8, "deleted")]
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "ACCOUNT_DELETED")
    for call in others:
        assert (await ended(call))[:2] == (grpc.StatusCode.UNAUTHENTICATED, "ACCOUNT_DELETED")
    assert service.live_sessions(me) == 0


async def test_the_client_learns_its_account_was_deleted_elsewhere(
    server: ChatStreamServer,
) -> None:
    me = name()
    async with open_client(server.address) as here, open_client(server.address) as there:
        await here.signup(me, "pw-secret-1")
        await there.login(me, "pw-secret-1")
        await here.delete_account(me, "pw-secret-1")
        with pytest.raises(ConnectionError):
            await there.next_message(WAIT)  # messages() ends
        assert there.closed_reason == CloseReason.ACCOUNT_DELETED.value


async def test_a_failed_login_is_answered_then_ends_the_stream(
    service: ChatService, channel: grpc.aio.Channel
) -> None:
    call = connect(channel)
    await call.write(
        pb.ClientMessage(request_id=1, login=pb.LoginRequest(username=name(), password="x"))
    )
    code, reason, before = await ended(call)
    [reply] = before
    assert (reply.request_id, reply.error.reason) == (1, pb.AUTH_FAILED)
    assert reply.error.message == "wrong username or password"
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "LOGIN_FAILED")


async def test_a_malformed_message_ends_the_stream_and_harms_no_one(
    service: ChatService, server: ChatStreamServer, channel: grpc.aio.Channel
) -> None:
    me = name()
    async with open_client(server.address) as bystander:
        await bystander.signup(name(), "pw-secret-1")
        raw = channel.stream_stream(METHOD)()  # bytes in, bytes out
        await raw.write(
            pb.ClientMessage(
                request_id=1, signup=pb.SignupRequest(username=me, password="pw-secret-1")
            ).SerializeToString()
        )
        await raw.read()
        # A signup (field 2) whose username (field 1) is the invalid UTF-8 byte 0xff.
        await raw.write(b"\x12\x03\x0a\x01\xff")
        code, reason, _ = await ended(raw)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert service.live_sessions(me) == 0
        assert (await bystander.list_accounts()).usernames  # the server is fine


async def test_a_request_too_big_for_grpc_is_refused_by_the_client_and_the_session_goes_on(
    server: ChatStreamServer,
) -> None:
    me = name()
    async with open_client(server.address) as client:
        await client.signup(me, "pw-secret-1")
        with pytest.raises(LimitExceeded):
            await client.send([me], "x" * (4 * limits.MAX_BODY_BYTES))
        await client.send([me], "still here")
        assert (await client.next_message(WAIT)).body == "still here"


# -- backpressure and shutdown -----------------------------------------------------------------
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


async def test_a_slow_consumer_is_cut_off_and_loses_nothing(
    service: ChatService, server: ChatStreamServer
) -> None:
    """A client that stops reading: HTTP/2 flow control stalls our writes, the core's queue
    fills, the core ends the session, and when the client reads again its stream ends with
    UNAUTHENTICATED (SLOW_CONSUMER): the session is over, no retry can help. Everything stays
    pending."""
    host, port = server.address
    slow = name()
    async with grpc.aio.insecure_channel(f"{host}:{port}", options=STINGY_CLIENT) as channel:
        call = connect(channel)
        await signed_up(call, slow)
        sent = await flood_until_cut_off(service, slow)
        assert sent > QUEUE_HOLDS
        code, reason, before = await ended(call)
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "SLOW_CONSUMER")
        assert len(before) < sent - QUEUE_HOLDS  # only what got through
    again = service.open_session()
    assert (
        await service.login(again, slow, "pw-secret-1")
    ).pending == sent  # nothing acked, all kept


async def test_a_stream_stuck_on_a_client_that_never_reads_is_cancelled(
    service: ChatService, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="transports.grpc_stream")
    monkeypatch.setattr(server_module, "SWEEP_INTERVAL", 0.1)
    server = await start_server(service, "127.0.0.1", 0, guard=suite_guard())
    host, port = server.address
    try:
        async with grpc.aio.insecure_channel(f"{host}:{port}", options=STINGY_CLIENT) as channel:
            stuck = name()
            call = connect(channel)
            await signed_up(call, stuck)
            await flood_until_cut_off(service, stuck)
            # Our pusher is blocked writing to a client that reads nothing: the sweep cancels
            # the call two sweeps after the session ended.
            await until(lambda: not server.streams, "the stuck stream to be cancelled")
            assert "cancelling the stuck stream" in caplog.text
            call.cancel()
    finally:
        await server.close()


async def test_closing_the_server_tells_clients_it_is_shutting_down(
    service: ChatService,
) -> None:
    server = await start_server(service, "127.0.0.1", 0, guard=suite_guard())
    logged_in, anonymous = open_client(server.address), open_client(server.address)
    try:
        await logged_in.connect()
        await anonymous.connect()
        await logged_in.signup(name(), "pw-secret-1")
        await server.close()
        with pytest.raises(ConnectionError):
            await logged_in.next_message(WAIT)
        with pytest.raises(ConnectionError):
            await anonymous.next_message(WAIT)
        assert logged_in.closed_reason == CloseReason.SHUTDOWN.value
        assert anonymous.closed_reason == CloseReason.SHUTDOWN.value
    finally:
        await logged_in.close()
        await anonymous.close()
        await server.close()


async def test_connecting_to_nothing_raises(server: ChatStreamServer) -> None:
    host, port = server.address
    await server.close()
    client = open_client((host, port))
    with pytest.raises(OSError):
        await client.connect()
    await client.close()
