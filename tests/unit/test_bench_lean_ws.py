"""The lean websocket generator (bench/refs/lean_ws.py): its frames are the product client's
text in masked client frames, replies are matched to request ids in order, errors and pushes
are told apart, pings answered; then short loops against the null responder, ws_echo and a
real websocket server started on 127.0.0.1 by wirechat.launch.ServerProcess."""

from __future__ import annotations

import functools
import os
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from bench.loadgen import Timings, close
from bench.refs.lean_load import frames_closed_loop, frames_open_loop
from bench.refs.lean_ws import CHAT, ECHO, NULL, LeanWs, connect_ws, speaks_ws
from core import requests as rq
from tests.unit.lean_echo import (
    FakeTransport,
    assert_every_request_answered,
    null_echo,
    open_loop_of_200,
)
from transports.websocket._client_codec import encode_request


def _conn(kind: str = CHAT) -> tuple[LeanWs, Timings, FakeTransport]:
    """A connection past its set-up (no server: the frames are fed by hand)."""
    timings = Timings()
    conn = LeanWs(timings, kind, "ws://127.0.0.1:1/chat", None)
    conn.proto.state = State.OPEN  # (the handshake is what the real-server tests cover)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.sending(("bob",), "hello")
    return conn, timings, transport


def _issue(conn: LeanWs, n: int) -> list[int]:
    """``n`` requests outstanding (as the loops do), their request ids."""
    rids = [conn.frame_id() for _ in range(n)]
    conn.pending.extend((0, 0, rid) for rid in rids)
    return rids


def _text(message: str) -> bytes:
    """A server's text frame (unmasked, as a server sends it)."""
    return Frame(Opcode.TEXT, message.encode()).serialize(mask=False)


def _sent(rid: int) -> bytes:
    """The server's reply to a SEND, as transports/websocket/_messages.py writes it."""
    return _text(
        f'{{"id":{rid},"ok":{{"message_id":{1000 + rid},"sent_at":1764331200123,'
        '"unknown":[],"conversation_id":5}}'
    )


def _read_as_server(data: bytes) -> tuple[ServerProtocol, list[Frame]]:
    """``data`` (client frames) read by the library's own server side: the frames it saw."""
    server = ServerProtocol(state=State.OPEN)
    server.receive_data(data)
    return server, [e for e in server.events_received() if isinstance(e, Frame)]


def test_frames_are_masked_client_frames_of_the_product_clients_text() -> None:
    conn, _, _ = _conn()
    assert _issue(conn, 3) == [1, 2, 3]
    server, frames = _read_as_server(b"".join(conn.frames[1:]))
    assert server.state is State.OPEN, f"the server side refused a frame: {server.close_exc}"
    assert all(conn.frames[rid][1] & 0x80 for rid in (1, 2, 3)), "client frames are masked"
    assert [bytes(f.data).decode() for f in frames] == [
        encode_request(rid, rq.Send(("bob",), "hello")) for rid in (1, 2, 3)
    ]


def test_request_ids_are_reused_before_new_ones() -> None:
    conn, _, _ = _conn()
    _issue(conn, 3)
    conn.data_received(_sent(1) + _sent(2))
    assert {conn.frame_id(), conn.frame_id()} == {1, 2} and conn.frame_id() == 4


def test_every_reply_is_matched_whatever_pieces_it_arrives_in() -> None:
    """Replies fed whole, one byte at a time and split mid-frame, with a 126-byte-plus (2-byte
    length) push among them: each request completes once, in order."""
    push = _text('{"push":"deliver","from":"x","body":"' + "p" * 200 + '"}')
    for pieces in ("whole", "bytes", "halves"):
        conn, timings, _ = _conn()
        rids = _issue(conn, 150)
        stream = b"".join(_sent(rid) + (push if rid == 7 else b"") for rid in rids)
        if pieces == "whole":
            chunks = [stream]
        elif pieces == "bytes":
            chunks = [stream[i : i + 1] for i in range(len(stream))]
        else:
            chunks = [stream[: len(stream) // 2 + 3], stream[len(stream) // 2 + 3 :]]
        for chunk in chunks:
            conn.data_received(chunk)
        assert len(timings.latency) == 150, f"{pieces}: {len(timings.latency)} replies matched"
        assert not conn.pending and conn.rest == b"" and conn.errors == 0, pieces
        assert sorted(conn.free) == rids and conn.lost is None, conn.lost


def test_an_error_reply_is_counted_against_the_request_it_answers() -> None:
    conn, timings, _ = _conn()
    _issue(conn, 3)
    error = _text('{"id":2,"error":{"code":"INVALID_ARGUMENT","message":"no"}}')
    conn.data_received(_sent(1) + error + _sent(3))
    assert len(timings.latency) == 2 and conn.errors == 1 and not conn.pending
    assert conn.first_error is not None and "INVALID_ARGUMENT" in conn.first_error
    assert conn.lost is None


def test_a_reply_out_of_order_ends_the_step() -> None:
    conn, timings, transport = _conn()
    _issue(conn, 2)
    conn.data_received(_sent(2))
    assert conn.lost is not None and "out of order" in conn.lost
    assert transport.closed and not timings.latency


def test_a_ping_is_answered_and_a_close_ends_the_step() -> None:
    conn, timings, transport = _conn()
    _issue(conn, 1)
    conn.data_received(Frame(Opcode.PING, b"hb").serialize(mask=False) + _sent(1))
    assert len(timings.latency) == 1 and conn.lost is None
    _, (pong,) = _read_as_server(transport.written[0])
    assert pong.opcode is Opcode.PONG and pong.data == b"hb"
    conn.data_received(
        Frame(Opcode.CLOSE, (1001).to_bytes(2, "big") + b"bye").serialize(mask=False)
    )
    assert conn.lost is not None and "1001" in conn.lost and transport.closed


def test_the_closed_loop_resends_the_answered_request_id_at_once() -> None:
    conn, timings, transport = _conn()
    _issue(conn, 2)
    conn.refill = True
    conn.data_received(_sent(1) + _sent(2))
    assert transport.written == [conn.frames[1] + conn.frames[2]]
    assert [rid for _, _, rid in conn.pending] == [1, 2] and len(timings.latency) == 2


def test_only_the_websocket_transport_gets_this_generator() -> None:
    assert speaks_ws("websocket")
    for other in ("loopback", "custom", "protobuf-tcp", "grpc", "grpc-stream", "nope"):
        assert not speaks_ws(other), other


async def test_the_open_loop_against_the_null_responder_answers_every_request() -> None:
    """null_echo writes the masked frames back: each is read as the reply to its request."""
    server, address = await null_echo()
    try:
        conns = await connect_ws(address, NULL, 3, Timings(), ("r",), "x" * 32)
        result = await open_loop_of_200(functools.partial(frames_open_loop, conns))
        close(conns)
    finally:
        server.close()
    assert_every_request_answered(result)


async def test_against_ws_echo_the_closed_loop_keeps_depth_requests_per_connection() -> None:
    from bench.refs import ws_echo

    server, port = await ws_echo.start("127.0.0.1", 0)
    try:
        conns = await connect_ws(("127.0.0.1", port), ECHO, 2, Timings(), ("r",), "z" * 32)
        result = await frames_closed_loop(conns, 4, 0.2)
        highest = max(len(c.frames) - 1 for c in conns)
        close(conns)
    finally:
        server.close()
    assert result.completed > 0 and result.errors == 0, result.first_error
    assert highest == 4  # ids 1..depth, reused: never more than depth outstanding
    assert all(not c.pending for c in conns)  # drained after the window


def _job(target: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "target": target,
        "connections": 2,
        "body": "b" * 32,
        "prefix": "lw",
        "warmup": 10,
        "frames": True,
        **kw,
    }


async def test_a_real_websocket_server_closed_then_open_loop() -> None:
    """The bench's own steps against a real server: the closed loop's rows are the product
    client's then this generator's; an open-loop step at a modest rate sends its whole
    schedule and has every send answered by a SENT, none lost or out of order."""
    from bench import load
    from wirechat.launch import ServerProcess

    server = ServerProcess(["websocket"], ":memory:").start()
    try:
        target = {
            "kind": "chat",
            "transport": "websocket",
            "address": list(server.addresses["websocket"]),
            "server_pid": server.pid,
        }
        closed = await load.run_load(_job(target, mode="closed", depth=2, duration_s=0.3))
        opened = await load.run_load(
            _job(
                target,
                prefix="lo",
                mode="open",
                rate=300.0,
                duration_s=0.5,
                max_inflight=500,
                drain_s=10.0,
            )
        )
    finally:
        server.stop()
    assert [r["engine"] for r in closed] == ["client", "lean-ws"]
    lean = closed[1]
    assert lean["completed"] > 0 and lean["errors"] == 0, lean["first_error"]
    assert lean["depth"] == 32 and lean["cleanup_error"] is None, lean
    (row,) = opened
    assert row["engine"] == "lean-ws" and row["offered_per_s"] == 300.0
    assert (row["scheduled"], row["sent"], row["completed"]) == (150, 150, 150), row
    assert (row["errors"], row["timeouts"], row["overloaded"]) == (0, 0, False), row
    assert row["cleanup_error"] is None, row["cleanup_error"]


async def test_the_ceiling_job_picks_this_generator_by_its_engine() -> None:
    from bench import load

    server, address = await null_echo()
    try:
        target = {
            "kind": "echo",
            "ref": "null_echo",
            "address": list(address),
            "server_pid": os.getpid(),
        }
        job = _job(target, mode="closed", depth=4, duration_s=0.1)
        (frames,) = await load.run_load(job)
        (ws,) = await load.run_load({**job, "engine": "lean-ws"})
    finally:
        server.close()
    assert frames["engine"] == "lean-frames" and ws["engine"] == "lean-ws"
    assert ws["completed"] > 0 and ws["errors"] == 0, ws["first_error"]


def test_the_full_ceiling_climbs_the_websocket_generator_in_three_low_steps() -> None:
    from bench.loadgen_scene import CEILING_PLANS

    full = CEILING_PLANS["full"]
    assert full.climb("lean-ws") == (0.05, 0.1, 0.2)
    assert full.climb("lean-frames") == full.climb("lean") == full.fractions
    assert CEILING_PLANS["quick"].climb("lean-ws") == (0.1,)
