"""The grpc-stream client's request path (transports/grpc_stream/_client.py): callers that
stop waiting, replies resolved by the reader, and the writes: one in flight, started by
request() itself or by the write before it, never by a caller's task; so a caller cancelled
while its write is still going out cannot end the session, queued writes keep their order, and
close() sends what is queued before it half-closes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from core import ChatClient, ChatService, HashCost, LimitExceeded, SendResult, SqliteStore, limits
from tests.conftest import suite_guard
from transports.grpc_stream import ChatStreamServer, open_client, start_server

WAIT = 30.0
#: Bodies this big fill HTTP/2's flow-control window (64 KiB by default) in one or two
#: writes: the next write waits for the server to read, so writes are really in flight and
#: queued while the callers are cancelled or the client closes.
BIG = limits.MAX_BODY_BYTES - 1024


@pytest.fixture
async def server() -> AsyncIterator[ChatStreamServer]:
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    server = await start_server(service, "127.0.0.1", 0, guard=suite_guard())
    yield server
    await server.close()
    await service.store.close()


@contextlib.asynccontextmanager
async def two_users(server: ChatStreamServer) -> AsyncIterator[tuple[ChatClient, ChatClient, str]]:
    """Alice's and Bob's clients, signed up; and Bob's name."""
    alice, bob = ("c" + uuid.uuid4().hex[:12] for _ in range(2))
    async with open_client(server.address) as a, open_client(server.address) as b:
        await a.signup(alice, "pw-secret-1")
        await b.signup(bob, "pw-secret-1")
        yield a, b, bob


async def test_sends_whose_callers_stopped_waiting_still_go_out_and_the_session_goes_on(
    server: ChatStreamServer,
) -> None:
    async with two_users(server) as (a, b, bob):
        callers = [asyncio.create_task(a.send([bob], f"#{i}")) for i in range(10)]
        await asyncio.sleep(0)  # each has handed its request over, none has its reply yet
        for caller in callers:
            caller.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        assert all(caller.cancelled() for caller in callers)
        # Nothing the cancelled callers did ended the stream: the next send is answered, and
        # every message went out, in order.
        result = await asyncio.wait_for(a.send([bob], "#10"), WAIT)
        assert result.unknown_recipients == ()
        assert a.logged_in and a.closed_reason is None
        bodies = [(await b.next_message(WAIT)).body for _ in range(11)]
        assert bodies == [f"#{i}" for i in range(11)]
        # The ids the cancelled sends held came back with their replies: a burst after them
        # is answered in full.
        results = await asyncio.wait_for(
            asyncio.gather(*(a.send([bob], f"again {i}") for i in range(20))), WAIT
        )
        assert [r.message_id for r in results] == sorted(r.message_id for r in results)


async def test_a_refused_send_raises_the_servers_error_to_its_caller_only(
    server: ChatStreamServer,
) -> None:
    async with two_users(server) as (a, _, bob):
        big = "x" * (limits.MAX_BODY_BYTES + 1)  # the server refuses it; the session goes on
        outcomes = await asyncio.gather(
            a.send([bob], "before"),
            a.send([bob], big),
            a.send([bob], "after"),
            return_exceptions=True,
        )
        assert not isinstance(outcomes[0], BaseException)
        assert isinstance(outcomes[1], LimitExceeded)
        assert not isinstance(outcomes[2], BaseException)
        assert a.logged_in


def body(i: int, size: int = 0) -> str:
    return f"#{i:04d}".ljust(size, ".")


async def bodies_received(client: ChatClient, count: int) -> list[str]:
    return [(await client.next_message(WAIT)).body for _ in range(count)]


async def test_callers_cancelled_while_their_big_writes_go_out_do_not_end_the_session(
    server: ChatStreamServer,
) -> None:
    async with two_users(server) as (a, b, bob):
        callers = [asyncio.create_task(a.send([bob], body(i, BIG))) for i in range(8)]
        await asyncio.sleep(0)  # each has handed its request over: one write out, the rest queued
        for caller in callers:
            caller.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        assert all(caller.cancelled() for caller in callers)
        result = await asyncio.wait_for(a.send([bob], body(8)), WAIT)
        assert isinstance(result, SendResult)
        assert a.logged_in and a.closed_reason is None
        assert [text[:5] for text in await bodies_received(b, 9)] == [body(i) for i in range(9)]


async def test_many_pipelined_sends_go_out_and_are_answered_in_order(
    server: ChatStreamServer,
) -> None:
    async with two_users(server) as (a, b, bob):
        count = 300
        results = await asyncio.wait_for(
            asyncio.gather(*(a.send([bob], body(i)) for i in range(count))), WAIT
        )
        ids = [result.message_id for result in results]
        assert ids == sorted(ids) and len(set(ids)) == count
        assert await bodies_received(b, count) == [body(i) for i in range(count)]


async def test_close_sends_what_is_queued_before_it_half_closes(server: ChatStreamServer) -> None:
    alice, bob = ("w" + uuid.uuid4().hex[:12] for _ in range(2))
    async with open_client(server.address) as b:
        await b.signup(bob, "pw-secret-1")
        a = open_client(server.address)
        await a.connect()
        await a.signup(alice, "pw-secret-1")
        count = 6
        callers = [asyncio.create_task(a.send([bob], body(i, BIG))) for i in range(count)]
        await asyncio.sleep(0)  # all handed over: one write out, the rest queued
        await a.close()
        outcomes = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(outcome, SendResult) for outcome in outcomes), outcomes
        received = await bodies_received(b, count)
        assert [text[:5] for text in received] == [body(i) for i in range(count)]
