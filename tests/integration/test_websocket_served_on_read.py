"""The websocket server serves a text message on the stack that read it when nothing is before
it, and queues the rest for its handler (transports/websocket/_server.py, ``_Connection._take``).

A client cannot tell the two paths apart: every case here writes a whole pipeline of frames in
ONE TCP write, so one read hands the server messages of both kinds (the first served at once,
the rest queued behind it), and checks what CONTRACT.md promises: replies in request order
(section 7), errors in their place, messages stored in request order, a logout taking effect
for the requests behind it, a binary frame still closing with 1003 after the replies before it,
invalid UTF-8 still closing with 1007. On the SQLite store a send waits for its commit, so the
message served at once is still in progress while the others queue (or, sends behind sends,
are served beside it: tests/integration/test_websocket_pipelined_sends.py); on the memory store
it answers before the read callback returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.frames import Frame, Opcode

from core import ChatService, HashCost, SqliteStore
from core.memory_store import MemoryStore
from tests.conftest import suite_guard
from tests.integration.ws_pipeline import PASSWORD, Pipeline, alice_and_offline_bob, signed_up
from transports.websocket import start_server
from transports.websocket._server import WebSocketServer

pytestmark = pytest.mark.timeout(60)


@pytest_asyncio.fixture(params=["sqlite", "memory"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WebSocketServer]:
    store = SqliteStore(tmp_path / "chat.db") if request.param == "sqlite" else MemoryStore()
    service = ChatService(store, hash_cost=HashCost.LOW)
    server = await start_server(service, "127.0.0.1", 0, guard=suite_guard())
    try:
        yield server
    finally:
        await server.close()
        await service.shutdown()


async def test_one_write_of_mixed_requests_is_answered_in_order(server: WebSocketServer) -> None:
    alice = await alice_and_offline_bob(server)
    messages: list[dict[str, Any] | str | bytes] = []
    for rid in range(1, 61):
        if rid % 10 == 3:
            messages.append({"id": rid, "op": "nope"})
        elif rid % 10 == 7:
            messages.append({"id": rid, "op": "list_accounts", "pattern": "b*"})
        else:
            messages.append({"id": rid, "op": "send", "to": ["bob"], "body": f"n{rid}"})
    messages.append('{"id": 61, "op": "send", ')  # (not JSON: MALFORMED without an id)
    messages.append({"id": 62, "op": "send", "to": ["bob"], "body": "last"})
    alice.writer.write(alice.frames(messages))
    replies = await alice.replies(62)
    assert [r["id"] for r in replies] == [*range(1, 61), None, 62]
    for rid, reply in zip(range(1, 61), replies[:60], strict=True):
        if rid % 10 == 3:
            assert reply["error"]["code"] == "UNKNOWN_OP"
        elif rid % 10 == 7:
            assert reply["ok"]["usernames"] == ["bob"]
        else:
            assert "message_id" in reply["ok"]
    assert replies[60]["error"]["code"] == "MALFORMED"
    sent = [r["ok"]["message_id"] for r in replies if "ok" in r and "message_id" in r["ok"]]
    assert sent == sorted(sent) and len(sent) == 49

    bob = await Pipeline.open(server)
    pending = await bob.pending_bodies("bob")
    expected = [f"n{rid}" for rid in range(1, 61) if rid % 10 not in (3, 7)] + ["last"]
    assert pending == expected
    await alice.close()
    await bob.close()


async def test_a_logout_in_a_pipeline_holds_for_the_requests_behind_it(
    server: WebSocketServer,
) -> None:
    alice = await alice_and_offline_bob(server)
    alice.writer.write(
        alice.frames(
            [
                {"id": 1, "op": "send", "to": ["bob"], "body": "before"},
                {"id": 2, "op": "logout"},
                {"id": 3, "op": "send", "to": ["bob"], "body": "after"},
                {"id": 4, "op": "login", "username": "alice", "password": PASSWORD},
                {"id": 5, "op": "send", "to": ["bob"], "body": "again"},
            ]
        )
    )
    replies = await alice.replies(5)
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5]
    assert "message_id" in replies[0]["ok"]
    assert replies[1]["ok"] == {}
    assert replies[2]["error"]["code"] == "NOT_LOGGED_IN"
    assert replies[3]["ok"]["username"] == "alice"
    assert replies[4]["ok"]["message_id"] > replies[0]["ok"]["message_id"]
    await alice.close()


async def test_a_binary_frame_behind_sends_closes_after_their_replies(
    server: WebSocketServer,
) -> None:
    alice = await alice_and_offline_bob(server)
    sends: list[dict[str, Any] | str | bytes] = [
        {"id": rid, "op": "send", "to": ["bob"], "body": f"n{rid}"} for rid in range(1, 6)
    ]
    alice.writer.write(alice.frames([*sends, b"\x00binary", sends[0]]))
    replies = await alice.replies(5)
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5]
    assert await alice.close_code() == 1003
    await alice.close()


async def test_invalid_utf8_behind_a_send_closes_with_1007(server: WebSocketServer) -> None:
    alice = await alice_and_offline_bob(server)
    assert alice.protocol is not None
    alice.writer.write(
        alice.frames([{"id": 1, "op": "send", "to": ["bob"], "body": "fine"}])
        + Frame(Opcode.TEXT, b'{"id": 2, "op": "\xff"}').serialize(mask=True)
    )
    (reply,) = await alice.replies(1)
    assert "message_id" in reply["ok"]
    assert await alice.close_code() == 1007
    await alice.close()


async def test_invalid_utf8_alone_closes_with_1007(server: WebSocketServer) -> None:
    alice = await signed_up(server, "alice")
    alice.writer.write(Frame(Opcode.TEXT, b'{"id": 2, "op": "\xff"}').serialize(mask=True))
    assert await alice.close_code() == 1007
    await alice.close()
