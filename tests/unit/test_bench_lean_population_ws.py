"""The lean websocket sessions of the population scene (bench/refs/lean_population_ws.py):
first by hand (frames fed without a server: replies matched by id, one ACK per read, pings,
a lost connection), then against a real websocket server started on 127.0.0.1 by
wirechat.launch.ServerProcess (memory store, test hash cost): sign-up, sends and their
pushes, acks that take effect, error replies, list_accounts, close-all."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from bench.endpoints import PASSWORD, chat_target
from bench.refs.lean_population_ws import ACK_ID, WsMember, log_in_ws, split_frames
from core.errors import InvalidArgument, LimitExceeded
from tests.unit.lean_echo import FakeTransport
from wirechat.launch import ServerProcess

#: Every wait on the server is bounded by this.
WAIT_S = 10.0


class _Transport(FakeTransport):
    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True


def _member() -> tuple[WsMember, list[str], _Transport]:
    """A session past its set-up (no server: frames are fed by hand)."""
    bodies: list[str] = []
    member = WsMember("ws://127.0.0.1:1/chat", bodies.append)
    member.proto.state = State.OPEN  # (the handshake is what the real-server tests cover)
    transport = _Transport()
    member.connection_made(transport)  # type: ignore[arg-type]
    member.start_reading()
    return member, bodies, transport


def _text(obj: dict[str, Any]) -> bytes:
    """A server's text frame (unmasked, as a server sends it)."""
    return Frame(Opcode.TEXT, json.dumps(obj, separators=(",", ":")).encode()).serialize(mask=False)


def _deliver(message_id: int, body: str) -> bytes:
    return _text(
        {
            "push": "deliver",
            "message_id": message_id,
            "from": "bob",
            "body": body,
            "sent_at": 1764331200123,
            "conversation_id": 5,
            "participants": ["bob"],
        }
    )


def _as_server(written: list[bytes]) -> list[Frame]:
    """What the library's own server side reads from the session's writes."""
    server = ServerProtocol(state=State.OPEN)
    server.receive_data(b"".join(written))
    assert server.state is State.OPEN, f"the server side refused a frame: {server.close_exc}"
    return [e for e in server.events_received() if isinstance(e, Frame)]


def _requests(written: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(bytes(f.data)) for f in _as_server(written) if f.opcode is Opcode.TEXT]


def test_frames_are_split_at_every_length_form_and_a_masked_one_refused() -> None:
    short, mid, wide = (Frame(Opcode.TEXT, b"s" * n).serialize(mask=False) for n in (5, 300, 70000))
    stream = short + mid + wide
    frames, used = split_frames(stream + wide[:9])
    assert used == len(stream) and frames is not None
    assert [(f, end - start) for f, start, end in frames] == [(0x81, 5), (0x81, 300), (0x81, 70000)]
    assert split_frames(wide[:-1]) == ([], 0)
    assert split_frames(short + Frame(Opcode.TEXT, b"m").serialize(mask=True))[0] is None


async def test_replies_are_matched_by_id_in_any_order_and_errors_raise() -> None:
    member, _, transport = _member()
    first = member.send(("bob", "carol"), "hi")
    second = member.list_accounts("b*", 5)
    third = member.send(("bob",), "")
    assert [r["op"] for r in _requests(transport.written)] == ["send", "list_accounts", "send"]
    assert [r["id"] for r in _requests(transport.written)] == [2, 3, 4]
    page = {"usernames": ["bob"], "more": False}
    member.data_received(
        _text({"id": 3, "ok": page})
        + _text({"id": 4, "error": {"code": "INVALID_ARGUMENT", "message": "empty body"}})
        + _text({"id": 2, "ok": {"message_id": 9, "sent_at": 1, "unknown": []}})
    )
    assert second.result() == page and first.result()["message_id"] == 9
    with pytest.raises(InvalidArgument, match="empty body"):
        third.result()
    assert not member.waiting and member.lost is None


async def test_one_ack_for_every_delivery_one_read_brought_whatever_the_pieces() -> None:
    """Three deliveries and a reply in one read: three on_push calls, one ACK of the three
    ids; the same stream a byte at a time: one ACK per delivery (each read completes one)."""
    stream = (
        _deliver(41, "a") + _deliver(42, "b" * 300) + _text({"push": "read"}) + _deliver(43, "c")
    )
    member, bodies, transport = _member()
    member.data_received(stream)
    assert bodies == ["a", "b" * 300, "c"]
    assert _requests(transport.written) == [{"id": ACK_ID, "op": "ack", "ids": [41, 42, 43]}]
    member, bodies, transport = _member()
    for i in range(len(stream)):
        member.data_received(stream[i : i + 1])
    assert bodies == ["a", "b" * 300, "c"] and member.rest == b""
    assert [r["ids"] for r in _requests(transport.written)] == [[41], [42], [43]]


async def test_pings_are_answered_a_failed_ack_counted_a_lost_connection_fails_requests() -> None:
    member, _, transport = _member()
    pending = member.send(("bob",), "x")
    member.data_received(
        Frame(Opcode.PING, b"hb").serialize(mask=False)
        + _text({"id": ACK_ID, "error": {"code": "LIMIT_EXCEEDED", "message": "too many"}})
    )
    frames = _as_server(transport.written)
    assert frames[-1].opcode is Opcode.PONG and frames[-1].data == b"hb"
    assert member.ack_errors == 1 and member.ack_error == "LIMIT_EXCEEDED: too many"
    assert not pending.done()
    member.data_received(
        Frame(Opcode.CLOSE, (4003).to_bytes(2, "big") + b"slow").serialize(mask=False)
    )
    assert transport.closed and member.lost is not None and "4003" in member.lost
    member.connection_lost(None)
    with pytest.raises(ConnectionError, match="4003"):
        pending.result()
    with pytest.raises(ConnectionError, match="gone"):
        member.send(("bob",), "y").result()
    assert member.closed.done()


# -- against a real server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess(["websocket"], ":memory:").start()
    try:
        yield process
    finally:
        process.stop()


def _address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.addresses["websocket"]
    return str(host), int(port)


async def _pending_for(server: ServerProcess, name: str) -> int:
    """How many messages wait for ``name``: a fresh ChatClient login's ``pending``."""
    spec = {"transport": "websocket", "address": list(_address(server)), "server_pid": server.pid}
    target = chat_target(spec)
    try:
        client = await target.client()
        return (await asyncio.wait_for(client.login(name, PASSWORD), WAIT_S)).pending
    finally:
        await target.aclose()


async def _until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {WAIT_S:g} s"
        await asyncio.sleep(0.01)


async def test_twenty_sessions_send_push_and_ack(server: ServerProcess) -> None:
    """A send to three of 20 sessions resolves with the server's SENT; each recipient's push
    comes once and is acked: a fresh login of each finds nothing pending, while a user whose
    session had closed before the send finds the message waiting."""
    names = [f"lpa{i}" for i in range(20)]
    pushes: list[str] = []
    _, close_away = await log_in_ws(_address(server), ["lpaway"], PASSWORD, pushes.append)
    await close_away()
    members, close_all = await log_in_ws(_address(server), names, PASSWORD, pushes.append, batch=8)
    try:
        assert len(members) == 20
        recipients = (*names[1:4], "lpaway")
        reply = await asyncio.wait_for(members[0].send(recipients, "hey"), WAIT_S)
        assert reply["message_id"] > 0 and reply["unknown"] == []
        await _until(lambda: len(pushes) >= 3, "three pushes")
        # a request after the ack on each recipient's connection: the ack was handled by then
        for i in (1, 2, 3):
            await asyncio.wait_for(members[i].list_accounts("lpa1", 1), WAIT_S)
        assert pushes == ["hey"] * 3
        assert all(m.ack_errors == 0 for m in members)
        assert [await _pending_for(server, n) for n in names[1:4]] == [0, 0, 0]
        assert await _pending_for(server, "lpaway") == 1
    finally:
        await close_all()


async def test_an_error_reply_raises_and_the_session_goes_on(server: ServerProcess) -> None:
    pushes: list[str] = []
    members, close_all = await log_in_ws(
        _address(server), ["lpe0", "lpe1"], PASSWORD, pushes.append
    )
    try:
        sender = members[0]
        too_long = sender.send(("lpe1",), "x" * 65537)
        twice = sender.send(("lpe1", "lpe1"), "dup")
        fine = sender.send(("lpe1", "nobody_here"), "after")
        with pytest.raises(LimitExceeded, match="65536"):
            await asyncio.wait_for(too_long, WAIT_S)
        with pytest.raises(InvalidArgument):
            await asyncio.wait_for(twice, WAIT_S)
        reply = await asyncio.wait_for(fine, WAIT_S)
        assert reply["unknown"] == ["nobody_here"]
        await _until(lambda: pushes == ["after"], "the push after the errors")
        assert sender.lost is None and not sender.waiting
    finally:
        await close_all()


async def test_list_accounts_returns_a_page(server: ServerProcess) -> None:
    names = [f"lpl{i}" for i in range(7)]
    members, close_all = await log_in_ws(_address(server), names, PASSWORD, lambda _: None)
    try:
        first, rest = await asyncio.wait_for(
            asyncio.gather(
                members[3].list_accounts("lpl*", 5), members[3].list_accounts("lpl*", 0)
            ),
            WAIT_S,
        )
    finally:
        await close_all()
    assert first == {"usernames": sorted(names)[:5], "more": True}
    assert rest == {"usernames": sorted(names), "more": False}


async def test_close_all_closes_every_connection_in_bounded_time(server: ServerProcess) -> None:
    members, close_all = await log_in_ws(
        _address(server), [f"lpc{i}" for i in range(12)], PASSWORD, print
    )
    started = time.monotonic()
    await asyncio.wait_for(close_all(), WAIT_S)
    assert time.monotonic() - started < 3.0
    assert all(
        m.closed.done() and m.transport is not None and m.transport.is_closing() for m in members
    )
    with pytest.raises(ConnectionError):
        await members[0].send(("lpc1",), "late")
    await asyncio.wait_for(close_all(), WAIT_S)  # a second call is harmless


async def test_a_failed_sign_up_closes_the_sessions_made_and_raises(server: ServerProcess) -> None:
    kept, close_kept = await log_in_ws(_address(server), ["lpf0"], PASSWORD, print)
    try:
        with pytest.raises(ConnectionError, match="USERNAME_TAKEN"):
            await log_in_ws(_address(server), ["lpf1", "lpf2", "lpf0"], PASSWORD, print, batch=2)
    finally:
        await close_kept()
    assert len(kept) == 1
