"""The custom server's staged SENDs on the SQLite store (issue 10; ``_StagedConnection`` in
transports/custom/_server.py): the driver begins the send (``ChatService.send_begun``) and the
store's group commit wakes it to finish it (``send_stored``), with no coroutine and no
Continuation per send. What
a user sees must not change: replies in request order on every connection at once, errors in
their place, pushes after the commit even when the sender is gone, and the same with the
commit on its own thread (synchronous FULL). Both codecs of the custom driver."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core import ChatService, HashCost, SqliteStore
from tests.integration.test_pipelined_sends import (
    CODECS,
    PASSWORD,
    WAIT,
    Raw,
    bob_and_alice,
    codec_name,
    pending_bodies,
    serve,
    service,
)
from transports.custom import Error, ErrorCode, Ping, Pong, Send, Sent, open_client
from transports.custom._server import _StagedConnection
from transports.custom._wire import MAX_FRAME, put_varint

pytestmark = pytest.mark.timeout(60)
__all__ = ["codec_name", "service"]  # (fixtures, shared with test_pipelined_sends)


async def test_the_sqlite_store_gets_staged_connections(service: ChatService, codec_name: str):
    async with bob_and_alice(service, codec_name) as (server, _alice):
        assert server._connections
        assert all(type(c) is _StagedConnection for c in server._connections)


async def test_many_connections_bursting_at_once_each_get_their_replies_in_order(
    service: ChatService, codec_name: str
) -> None:
    async with bob_and_alice(service, codec_name) as (server, alice):
        senders = [alice] + [await Raw.signup(server, codec_name, f"s{i}") for i in range(5)]
        commits = service.store.commits  # type: ignore[attr-defined]
        requests: list[list[Any]] = []
        for n, sender in enumerate(senders):
            mine: list[Any] = [Send(i + 2, ("bob",), f"{n}:{i}") for i in range(40)]
            mine.insert(17, Ping(100, b"p"))
            requests.append(mine)
            sender.write(mine)
        replies = await asyncio.gather(
            *(s.read(len(r)) for s, r in zip(senders, requests, strict=True))
        )

        total = 0
        for mine, got in zip(requests, replies, strict=True):
            assert [r.request_id for r in got] == [q.request_id for q in mine]
            assert [type(r) for r in got] == [Pong if type(q) is Ping else Sent for q in mine]
            ids = [r.message_id for r in got if isinstance(r, Sent)]
            assert ids == sorted(ids) and 0 not in ids  # stored in request order
            total += len(ids)
        assert service.store.commits - commits < total // 4  # type: ignore[attr-defined]
        stored = await pending_bodies(server, codec_name, "bob")
        for n in range(len(senders)):
            assert [b for b in stored if b.startswith(f"{n}:")] == [f"{n}:{i}" for i in range(40)]


async def test_errors_before_between_and_after_staged_sends_answer_in_their_place(
    service: ChatService, codec_name: str
) -> None:
    async with bob_and_alice(service, codec_name) as (server, alice):
        twice = ("bob", "bob")  # a request-level error (Rule 8)
        requests = [
            Send(2, twice, "e0"),
            *[Send(i, ("bob",), f"a{i}") for i in range(3, 13)],
            Send(13, twice, "e1"),
            Send(14, ("nobody",), "lost"),  # answered, stored for no one
            Send(15, twice, "e2"),
            *[Send(i, ("bob",), f"b{i}") for i in range(16, 26)],
            Send(26, twice, "e3"),
        ]
        alice.write(requests)
        replies = await alice.read(len(requests))

        assert [r.request_id for r in replies] == [q.request_id for q in requests]
        errors = [r.request_id for r in replies if isinstance(r, Error)]
        assert errors == [2, 13, 15, 26]
        assert {r.code for r in replies if isinstance(r, Error)} == {ErrorCode.INVALID_ARGUMENT}
        [lost] = [r for r in replies if r.request_id == 14]
        assert isinstance(lost, Sent) and lost.message_id == 0
        assert lost.unknown_recipients == ("nobody",)
        expected = [q.body for q in requests if q.body[0] in "ab"]
        assert await pending_bodies(server, codec_name, "bob") == expected
        alice.write([Ping(30, b"after")])  # the connection goes on
        [pong] = await alice.read(1)
        assert isinstance(pong, Pong) and pong.request_id == 30


async def test_a_live_recipient_gets_every_stored_send_of_a_sender_that_vanished(
    service: ChatService, codec_name: str, tmp_path: Path
) -> None:
    async with bob_and_alice(service, codec_name) as (server, _alice):
        async with open_client(server.address, codec=CODECS[codec_name]) as bob:
            await bob.login("bob", PASSWORD)
            for round_ in range(3):
                sender = await Raw.signup(server, codec_name, f"gone{round_}")
                sender.write([Send(i + 2, ("bob",), f"r{round_}-{i}") for i in range(30)])
                await sender.writer.drain()
                sender.writer.transport.abort()  # gone with its sends staged
            async with asyncio.timeout(WAIT):
                while server.guard.connections > 3:  # noqa: ASYNC110 - no event to wait on
                    await asyncio.sleep(0.02)
                # (what the vanished senders staged is committed, then pushed)
                while service.store._writer._busy or service.store._writer._queue:  # type: ignore[attr-defined]  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            with sqlite3.connect(tmp_path / "chat.db") as db:
                stored = [body for (body,) in db.execute("SELECT body FROM messages ORDER BY id")]
            assert stored  # (the server read some of each burst before the reset)
            pushed = [(await bob.next_message(WAIT)).body for _ in stored]
            assert pushed == stored


async def test_with_the_commit_on_its_thread_replies_keep_request_order(
    tmp_path: Path, codec_name: str
) -> None:
    store = SqliteStore(tmp_path / "full.db", synchronous="FULL")
    service = ChatService(store, hash_cost=HashCost.LOW)
    try:
        server = await serve(service, codec_name)
        try:
            await (await Raw.signup(server, codec_name, "bob")).writer.drain()
            alice = await Raw.signup(server, codec_name, "alice")
            sends = [Send(i + 2, ("bob",), f"m{i}") for i in range(60)]
            alice.write(sends)
            replies = await alice.read(len(sends))
            assert [r.request_id for r in replies] == [s.request_id for s in sends]
            ids = [r.message_id for r in replies]
            assert all(isinstance(r, Sent) for r in replies) and ids == sorted(ids)
            assert await pending_bodies(server, codec_name, "bob") == [s.body for s in sends]
        finally:
            await server.close()
    finally:
        await service.shutdown()


async def test_a_server_closed_with_sends_staged_stores_them_and_answers_none_after(
    service: ChatService, codec_name: str
) -> None:
    writer = service.store._writer  # type: ignore[attr-defined]
    server = await serve(service, codec_name)
    try:
        await (await Raw.signup(server, codec_name, "bob")).writer.drain()
        alice = await Raw.signup(server, codec_name, "alice")
        writer._held = True  # (as during a checkpoint's second pass: queued writes wait)
        sends = [Send(i + 2, ("bob",), f"m{i}") for i in range(20)]  # (within sends_in_flight)
        alice.write(sends)
        async with asyncio.timeout(WAIT):
            while len(writer._queue) < len(sends):  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
        closing = asyncio.ensure_future(server.close())
        await asyncio.sleep(0)  # (its first step: every connection is told SHUTDOWN)
        writer._held = False
        writer._next()  # (the writes go on: the staged sends commit, their connection closed)
        await asyncio.wait_for(closing, WAIT)
        events = await alice.read()  # until the server closes

        assert [(type(e), e.code) for e in events] == [(Error, ErrorCode.SHUTDOWN)]
    finally:
        writer._held = False
        await server.close()
    async with asyncio.timeout(WAIT):
        while writer._busy or writer._queue:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)
    server = await serve(service, codec_name)  # (the same store, served anew)
    try:  # every send the server took was stored, in order, though none was answered
        assert await pending_bodies(server, codec_name, "bob") == [s.body for s in sends]
    finally:
        await server.close()


async def test_a_frame_it_cannot_read_behind_staged_sends_ends_the_connection_after_their_replies(
    service: ChatService, codec_name: str
) -> None:
    """Bad input loses nothing: every send before the bad frame is answered (each SENT means
    stored), then the connection-ending ERROR, then the close; as on a store that never waits."""
    async with bob_and_alice(service, codec_name) as (server, alice):
        sends = [Send(i, ("bob",), f"m{i}") for i in range(2, 22)]
        too_large = bytearray()
        put_varint(too_large, MAX_FRAME * 4)  # (a length past the limit: refused unread)
        alice.writer.write(b"".join(alice.codec.send(e) for e in sends) + bytes(too_large))
        replies = await alice.read(None)  # (until the server closes)

        assert [type(r) for r in replies] == [Sent] * len(sends) + [Error]
        assert [r.request_id for r in replies[:-1]] == [q.request_id for q in sends]
        assert replies[-1].code is ErrorCode.FRAME_TOO_LARGE and replies[-1].request_id == 0
        assert await pending_bodies(server, codec_name, "bob") == [q.body for q in sends]
