"""The grpc-stream client's request path (transports/grpc_stream/_client.py): callers that
stop waiting, and replies resolved by the reader."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from core import ChatClient, ChatService, HashCost, LimitExceeded, SqliteStore, limits
from transports.grpc_stream import ChatStreamServer, open_client, start_server

WAIT = 10.0


@pytest.fixture
async def server() -> AsyncIterator[ChatStreamServer]:
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    server = await start_server(service, "127.0.0.1", 0)
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
