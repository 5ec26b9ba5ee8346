"""Pipelined sends on the websocket server (issue 10; CONTRACT.md section 7): on the SQLite
store, a connection's sends that wait for the group commit are served together (they share
transactions), yet replies come in request order, messages are stored in request order, any
other request is answered after the sends before it and sees them, a failing send answers in
its place, the bounds hold and give their bytes back, and a session that ends with sends in
flight loses no acknowledged message. Each pipeline is written in ONE TCP write
(tests/integration/ws_pipeline.py), so one read hands the server all of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core import ChatService, DeletedSenderPolicy, HashCost, SqliteStore
from tests.integration.failing_commits import fail_groups_with_poison
from tests.integration.ws_pipeline import (
    PASSWORD,
    WAIT,
    Pipeline,
    alice_and_offline_bob,
    pending_to,
    signed_up,
)
from transports._guard import Guard, ServerLimits
from transports.websocket import start_server
from transports.websocket._server import WebSocketServer

pytestmark = pytest.mark.timeout(60)


@pytest_asyncio.fixture
async def service(tmp_path: Path) -> AsyncIterator[ChatService]:
    service = ChatService(SqliteStore(tmp_path / "chat.db"), hash_cost=HashCost.LOW)
    yield service
    await service.shutdown()


@contextlib.asynccontextmanager
async def alice_sending(
    service: ChatService, limits: ServerLimits | None = None
) -> AsyncIterator[tuple[WebSocketServer, Pipeline]]:
    """A server with "bob" signed up and gone (his messages stay pending) and "alice" signed
    up on a raw connection; the server closed afterwards."""
    guard = Guard(limits) if limits is not None else None
    server = await start_server(service, "127.0.0.1", 0, guard=guard)
    try:
        alice = await alice_and_offline_bob(server)
        yield server, alice
        await alice.close()
    finally:
        await server.close()


def send(rid: int, body: str, to: tuple[str, ...] = ("bob",)) -> dict[str, Any]:
    return {"id": rid, "op": "send", "to": list(to), "body": body}


async def test_a_burst_of_sends_shares_commits_and_keeps_request_order(
    service: ChatService,
) -> None:
    async with alice_sending(service) as (server, alice):
        commits = service.store.commits  # type: ignore[attr-defined]
        bodies = [f"m{i}" for i in range(200)]
        history = {"id": 201, "op": "read_history", "participants": ["bob"], "limit": 1}
        accounts = {"id": 202, "op": "list_accounts", "pattern": "b*"}
        alice.writer.write(
            alice.frames([*(send(i + 1, b) for i, b in enumerate(bodies)), history, accounts])
        )
        replies = await alice.replies(202)

        assert [r["id"] for r in replies] == list(range(1, 203))
        ids = [r["ok"]["message_id"] for r in replies[:200]]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)  # stored in request order
        # the requests after the burst are answered after it, and see all of it
        assert [m["body"] for m in replies[200]["ok"]["messages"]] == ["m199"]
        assert replies[201]["ok"]["usernames"] == ["bob"]
        # The sends of this one connection shared transactions (before, one each).
        assert service.store.commits - commits < len(bodies) // 2  # type: ignore[attr-defined]
        assert await pending_to(server, "bob") == bodies


async def test_a_failing_send_answers_in_its_place_and_the_rest_go_on(
    service: ChatService,
) -> None:
    async with alice_sending(service) as (server, alice):
        sends = [send(i + 1, f"m{i}") for i in range(30)]
        sends[11] = send(12, "twice", ("bob", "bob"))  # a request-level error
        sends[20] = send(21, "")  # another
        alice.writer.write(alice.frames([*sends]))
        replies = await alice.replies(len(sends))

        assert [r["id"] for r in replies] == [s["id"] for s in sends]
        assert replies[11]["error"]["code"] == "INVALID_ARGUMENT"
        assert replies[20]["error"]["code"] == "INVALID_ARGUMENT"
        assert all("message_id" in r["ok"] for i, r in enumerate(replies) if i not in (11, 20))
        expected = [s["body"] for i, s in enumerate(sends) if i not in (11, 20)]
        assert await pending_to(server, "bob") == expected


async def test_a_logout_after_sends_in_flight_answers_them_first(service: ChatService) -> None:
    async with alice_sending(service) as (server, alice):
        sends = [send(i + 1, f"m{i}") for i in range(40)]
        behind = send(42, "after the logout")
        alice.writer.write(alice.frames([*sends, {"id": 41, "op": "logout"}, behind]))
        replies = await alice.replies(len(sends) + 2)

        assert [r["id"] for r in replies] == list(range(1, 43))
        assert all("message_id" in r["ok"] for r in replies[:40])
        assert replies[40]["ok"] == {}
        assert replies[41]["error"]["code"] == "NOT_LOGGED_IN"
        assert await pending_to(server, "bob") == [s["body"] for s in sends]


async def test_deleting_the_account_answers_the_sends_before_it(tmp_path: Path) -> None:
    service = ChatService(
        SqliteStore(tmp_path / "keep.db"),
        hash_cost=HashCost.LOW,
        deleted_sender=DeletedSenderPolicy.KEEP,  # (else Rule 15 deletes them with alice)
    )
    try:
        async with alice_sending(service) as (server, alice):
            sends = [send(i + 1, f"m{i}") for i in range(30)]
            delete = {"id": 31, "op": "delete_account", "username": "alice", "password": PASSWORD}
            alice.writer.write(alice.frames([*sends, delete, send(32, "never")]))
            replies, code = await alice.until_close()

            assert [r["id"] for r in replies] == list(range(1, 32))
            assert all("message_id" in r["ok"] for r in replies[:30])
            assert code == 4002
            assert await pending_to(server, "bob") == [s["body"] for s in sends]
    finally:
        await service.shutdown()


async def test_a_failed_commit_ends_the_connection_after_the_replies_before_it(
    service: ChatService, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_groups_with_poison(monkeypatch)
    async with alice_sending(service) as (server, alice):
        first = [send(i + 1, f"a{i}") for i in range(5)]
        alice.writer.write(alice.frames(first))
        assert all("message_id" in r["ok"] for r in await alice.replies(len(first)))
        second = [send(i + 10, "poison" if i == 4 else f"b{i}") for i in range(10)]
        alice.writer.write(alice.frames(second))
        replies, code = await alice.until_close()

        *answered, last = replies
        assert last["error"]["code"] == "INTERNAL" and code == 1011
        assert all("message_id" in r["ok"] for r in answered)  # a prefix, in request order
        assert [r["id"] for r in answered] == [s["id"] for s in second][: len(answered)]
        assert last["id"] == second[len(answered)]["id"]  # the first one not stored
        acknowledged = [s["body"] for s in first] + [s["body"] for s in second][: len(answered)]
        stored = await pending_to(server, "bob")
        assert stored == acknowledged  # every acknowledged one, in order; not the poison


@pytest.mark.parametrize(
    "limits",
    [ServerLimits(send_bytes_in_flight=64 * 1024), ServerLimits(sends_in_flight=2)],
    ids=["bytes", "count"],
)
async def test_bounded_pipelines_keep_order_and_give_their_bytes_back(
    service: ChatService, limits: ServerLimits
) -> None:
    async with alice_sending(service, limits) as (server, alice):
        sends = [send(i + 1, f"{i:04d}" + "x" * 20_000) for i in range(24)]
        alice.writer.write(alice.frames([*sends, {"id": 30, "op": "list_accounts"}]))
        replies = await alice.replies(len(sends) + 1)

        assert [r["id"] for r in replies] == [s["id"] for s in sends] + [30]
        assert all("message_id" in r["ok"] for r in replies[:-1])
        assert server.guard.inbound == 0  # (what the pipeline counted is given back)
        assert await pending_to(server, "bob") == [s["body"] for s in sends]


async def test_a_vanished_client_leaves_a_prefix_and_no_bytes_held(service: ChatService) -> None:
    server = await start_server(service, "127.0.0.1", 0)
    try:
        await (await signed_up(server, "bob")).close()
        for round_ in range(5):
            alice = await signed_up(server, f"alice{round_}")
            alice.writer.write(alice.frames([send(i + 1, f"r{round_}-{i}") for i in range(30)]))
            await alice.writer.drain()
            alice.writer.transport.abort()  # gone with its sends in flight
        async with asyncio.timeout(WAIT):
            while server.guard.connections > 0:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.02)
        assert server.guard.inbound == 0
        stored = await pending_to(server, "bob")
        for round_ in range(5):  # whatever was stored of each is a prefix, in order
            mine = [b for b in stored if b.startswith(f"r{round_}-")]
            assert mine == [f"r{round_}-{i}" for i in range(len(mine))]
    finally:
        await server.close()
