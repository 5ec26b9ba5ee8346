"""Input that ends a websocket connection, behind sends still waiting for their commit
(CONTRACT.md sections 7 and 11): the server answers every send it accepted before that input,
in request order, then closes with the code the contract names and a reason in words; every
send it answered is stored. On the SQLite store a send waits for the group commit; each test
holds the store's writer (as a checkpoint's second pass does) while the server reads the
pipeline, written in ONE TCP write (tests/integration/ws_pipeline.py), so the sends before the
bad input are certainly still in flight when it is read.

Before, the websockets library failed the connection at once on invalid UTF-8 (1007) and on
an oversized message (1009): the replies of the sends in flight were lost although their
messages were stored and delivered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.frames import Frame, Opcode

from core import ChatService
from tests.conftest import suite_guard
from tests.integration.test_websocket_pipelined_sends import service
from tests.integration.ws_pipeline import WAIT, Pipeline, alice_and_offline_bob, pending_to
from transports.websocket import start_server
from transports.websocket._messages import MAX_MESSAGE_BYTES
from transports.websocket._server import WebSocketServer

pytestmark = pytest.mark.timeout(60)

__all__ = ["service"]  # (the SQLite store fixture, shared with test_websocket_pipelined_sends)

SENDS = 20


@pytest_asyncio.fixture
async def server(service: ChatService) -> AsyncIterator[WebSocketServer]:
    server = await start_server(service, "127.0.0.1", 0, guard=suite_guard())
    try:
        yield server
    finally:
        await server.close()


def sends(count: int = SENDS, first: int = 1) -> list[dict[str, Any] | str | bytes]:
    return [
        {"id": rid, "op": "send", "to": ["bob"], "body": f"m{rid}"}
        for rid in range(first, first + count)
    ]


def text_frame(payload: bytes, *, fin: bool = True, opcode: Opcode = Opcode.TEXT) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=True)


async def write_held(service: ChatService, alice: Pipeline, data: bytes, queued: int) -> None:
    """Write ``data`` while the store's writer is held, until ``queued`` sends wait for it;
    then let the commits go on."""
    writer = service.store._writer  # type: ignore[attr-defined]
    writer._held = True  # (as during a checkpoint's second pass: queued writes wait)
    try:
        alice.writer.write(data)
        async with asyncio.timeout(WAIT):
            while len(writer._queue) < queued:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
    finally:
        writer._held = False
        writer._next()


async def answered_then_closed(
    server: WebSocketServer, alice: Pipeline, count: int, code: int
) -> str:
    """Every send of ``sends(count)`` answered ok, in request order, then the close with
    ``code``; every one stored. The close's reason, returned."""
    replies, closed, reason = await alice.until_close_why()
    assert [r["id"] for r in replies] == list(range(1, count + 1)), (replies, closed, reason)
    assert all("message_id" in r["ok"] for r in replies)
    ids = [r["ok"]["message_id"] for r in replies]
    assert ids == sorted(ids)
    assert closed == code
    await alice.close()
    assert await pending_to(server, "bob") == [f"m{rid}" for rid in range(1, count + 1)]
    return reason


async def test_invalid_utf8_behind_sends_in_flight_answers_them_then_closes_1007(
    service: ChatService, server: WebSocketServer
) -> None:
    alice = await alice_and_offline_bob(server)
    bad = text_frame(b'{"id": 99, "op": "send", "to": ["bob"], "body": "caf\xe9"}')
    await write_held(
        service, alice, alice.frames(sends()) + bad + alice.frames(sends(1, 100)), SENDS
    )
    reason = await answered_then_closed(server, alice, SENDS, 1007)
    assert "UTF-8" in reason and "99" not in reason  # (in words; nothing after it is served)


async def test_fragmented_invalid_utf8_behind_sends_answers_them_then_closes_1007(
    service: ChatService, server: WebSocketServer
) -> None:
    alice = await alice_and_offline_bob(server)
    bad = text_frame(b'{"id": 99, "op": "send", ', fin=False) + text_frame(
        b'"to": ["bob"], "body": "\xc3\x28"}', opcode=Opcode.CONT
    )
    await write_held(service, alice, alice.frames(sends()) + bad, SENDS)
    assert "UTF-8" in await answered_then_closed(server, alice, SENDS, 1007)


async def test_invalid_utf8_behind_sends_past_the_bounds_answers_them_then_closes_1007(
    service: ChatService,
) -> None:
    # Two sends in flight at most: the third waits, so the rest (and the bad text) queue in
    # the library and reach the handler one by one.
    server = await start_server(service, "127.0.0.1", 0, guard=suite_guard(sends_in_flight=2))
    try:
        alice = await alice_and_offline_bob(server)
        bad = text_frame(b'{"id": 99, "op": "logout", "x": "\xff"}')
        await write_held(service, alice, alice.frames(sends(6)) + bad, 2)
        assert "UTF-8" in await answered_then_closed(server, alice, 6, 1007)
    finally:
        await server.close()


async def test_an_oversized_message_behind_sends_answers_them_then_closes_1009(
    service: ChatService, server: WebSocketServer
) -> None:
    alice = await alice_and_offline_bob(server)
    big = text_frame(b"x" * (MAX_MESSAGE_BYTES + 1))
    await write_held(
        service, alice, alice.frames(sends()) + big + alice.frames(sends(1, 100)), SENDS
    )
    reason = await answered_then_closed(server, alice, SENDS, 1009)
    assert str(MAX_MESSAGE_BYTES) in reason  # (says the limit)


async def test_a_binary_message_behind_sends_answers_them_then_closes_1003(
    service: ChatService, server: WebSocketServer
) -> None:
    alice = await alice_and_offline_bob(server)
    binary = alice.frames([*sends(), b'{"id": 99, "op": "logout"}', *sends(1, 100)])
    await write_held(service, alice, binary, SENDS)
    assert "text" in await answered_then_closed(server, alice, SENDS, 1003)


async def test_bad_json_behind_sends_is_answered_in_its_place_and_the_rest_go_on(
    service: ChatService, server: WebSocketServer
) -> None:
    alice = await alice_and_offline_bob(server)
    bad = alice.frames([*sends(), '{"id": 99, "op": ', *sends(1, SENDS + 1)])
    await write_held(service, alice, bad, SENDS)
    replies = await alice.replies(SENDS + 2)
    assert [r["id"] for r in replies] == [*range(1, SENDS + 1), None, SENDS + 1]
    assert replies[SENDS]["error"]["code"] == "MALFORMED"
    await alice.close()
    expected = [f"m{rid}" for rid in range(1, SENDS + 2)]
    assert await pending_to(server, "bob") == expected
