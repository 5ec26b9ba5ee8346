"""The lean frame generator (bench/refs/lean_load.py): how it matches replies to requests,
counts errors and reuses request ids, fed the custom codec's own frames; then short loops
against the null responder (bench/refs/null_echo.py) on 127.0.0.1."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from bench.loadgen import Timings, close
from bench.refs.lean_load import (
    SEND,
    LeanFrames,
    connect_null,
    framed_codec,
    frames_closed_loop,
    frames_open_loop,
    offline_codec,
)
from tests.unit.lean_echo import (
    FakeTransport,
    assert_every_request_answered,
    echo_target,
    null_echo,
    open_loop_of_200,
)
from transports import custom, protobuf_tcp
from transports.custom import Connection, Error, ErrorCode, Hello, Role, Send, Sent, Welcome
from transports.custom._wire import MAX_BODY, MAX_FRAME, MAX_RECIPIENTS


def _server_codec(codec: Any = Connection) -> Connection:
    """A server codec past the handshake: it writes the replies the generator reads."""
    client, server = codec(Role.CLIENT), codec(Role.SERVER)
    server.receive_data(client.send(Hello(client.versions[0], client.versions[-1])))
    server.next_event()
    assert server.version is not None
    server.send(Welcome(server.version, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS))
    return server


def _conn(codec: Any = Connection) -> tuple[LeanFrames, Timings, FakeTransport]:
    timings = Timings()
    conn = LeanFrames(timings, offline_codec(codec))
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.sending(("bob",), "hello")
    return conn, timings, transport


def _issue(conn: LeanFrames, n: int) -> list[int]:
    """``n`` requests outstanding (as the loops do), their request ids."""
    rids = [conn.frame_id() for _ in range(n)]
    conn.pending.extend((0, 0, rid) for rid in rids)
    return rids


def test_request_ids_are_reused_before_new_ones_and_frames_are_the_codecs() -> None:
    conn, _, _ = _conn()
    assert _issue(conn, 3) == [1, 2, 3]
    server = _server_codec()
    conn.data_received(b"".join(server.send(Sent(rid, 10 + rid, 0)) for rid in (1, 2)))
    assert {conn.frame_id(), conn.frame_id()} == {1, 2} and conn.frame_id() == 4
    # the frame of request id 3 is the product client's SEND, byte for byte
    assert conn.frames[3] == offline_codec().send(Send(3, ("bob",), "hello"))


@pytest.mark.parametrize("codec", [custom.Connection, protobuf_tcp.Connection])
def test_every_reply_is_matched_whatever_pieces_it_arrives_in(codec: Any) -> None:
    """Replies fed whole, one byte at a time and split mid-frame: each completes once, in
    order, and returns its request id; ids above 127 (two-byte varints) included."""
    server = _server_codec(codec)
    for pieces in ("whole", "bytes", "halves"):
        conn, timings, _ = _conn(codec)
        rids = _issue(conn, 200)
        stream = b"".join(server.send(Sent(rid, 1000 + rid, 1_700_000_000_000)) for rid in rids)
        if pieces == "whole":
            chunks = [stream]
        elif pieces == "bytes":
            chunks = [stream[i : i + 1] for i in range(len(stream))]
        else:
            chunks = [stream[: len(stream) // 2 + 3], stream[len(stream) // 2 + 3 :]]
        for chunk in chunks:
            conn.data_received(chunk)
        assert len(timings.latency) == 200 and len(timings.service) == 200, pieces
        assert not conn.pending and conn.rest == b"" and conn.errors == 0
        assert sorted(conn.free) == rids and conn.lost is None


def test_an_error_reply_is_counted_and_pushes_answer_no_request() -> None:
    server = _server_codec()
    conn, timings, _ = _conn()
    _issue(conn, 3)
    push = bytes((3, 0xA0, 0, 0))  # a DELIVER-like frame with request id 0: skipped
    stream = (
        server.send(Sent(1, 5, 0))
        + push
        + server.send(Error(2, ErrorCode.INVALID_ARGUMENT, "no"))
        + server.send(Sent(3, 6, 0))
    )
    conn.data_received(stream)
    assert len(timings.latency) == 2 and conn.errors == 1 and not conn.pending
    assert conn.first_error is not None and "0xFF" in conn.first_error


def test_a_reply_out_of_order_ends_the_step() -> None:
    server = _server_codec()
    conn, timings, transport = _conn()
    _issue(conn, 2)
    conn.data_received(server.send(Sent(2, 5, 0)))
    assert conn.lost is not None and "out of order" in conn.lost
    assert transport.closed and not timings.latency


def test_a_connection_level_error_marks_the_connection_lost() -> None:
    server = _server_codec()
    conn, _, _ = _conn()
    _issue(conn, 1)
    conn.data_received(server.send(Error(0, ErrorCode.MALFORMED, "bad frame")))
    assert conn.lost is not None and len(conn.pending) == 1


def test_the_closed_loop_resends_the_answered_request_id_at_once() -> None:
    server = _server_codec()
    conn, timings, transport = _conn()
    _issue(conn, 2)
    conn.refill = True
    conn.data_received(server.send(Sent(1, 5, 0)) + server.send(Sent(2, 6, 0)))
    assert transport.written == [conn.frames[1] + conn.frames[2]]
    assert [rid for _, _, rid in conn.pending] == [1, 2] and len(timings.latency) == 2


def test_only_the_custom_framed_transports_get_the_frame_generator() -> None:
    assert framed_codec("custom") is custom.Connection
    assert framed_codec("protobuf-tcp") is protobuf_tcp.Connection
    for other in ("loopback", "grpc", "grpc-stream", "websocket", "no-such-transport"):
        assert framed_codec(other) is None


async def test_the_open_loop_answers_every_request_of_the_schedule() -> None:
    """Against the null responder (which echoes each SEND back: the reply it counts), every
    request of the schedule is sent, answered and timed once."""
    server, address = await null_echo()
    try:
        conns = await connect_null(address, 3, "x" * 32, Timings())
        assert all(c.reply_opcode == SEND for c in conns)
        result = await open_loop_of_200(functools.partial(frames_open_loop, conns))
        close(conns)
    finally:
        server.close()
    assert_every_request_answered(result)


async def test_the_closed_loop_keeps_depth_requests_per_connection() -> None:
    server, address = await null_echo()
    try:
        conns = await connect_null(address, 2, "z" * 32, Timings())
        result = await frames_closed_loop(conns, 4, 0.1)
        highest = max(len(c.frames) - 1 for c in conns)
        close(conns)
    finally:
        server.close()
    assert result.completed > 0 and result.errors == 0
    assert highest == 4  # ids 1..depth, reused: never more than depth outstanding
    assert all(not c.pending for c in conns)  # drained after the window


async def test_run_load_picks_the_frame_generator_when_asked() -> None:
    """The ceiling's job: null_echo with ``frames`` is driven by the frame generator."""
    from bench import load

    server, address = await null_echo()
    try:
        job = {
            "target": echo_target(address),
            "mode": "closed",
            "depth": 4,
            "duration_s": 0.1,
            "connections": 2,
            "body": "b" * 32,
            "prefix": "t",
        }
        (echo,) = await load.run_load(job)
        (row,) = await load.run_load({**job, "frames": True})
    finally:
        server.close()
    assert echo["engine"] == "lean" and row["engine"] == "lean-frames"
    # at least the server's SEND pipeline per connection (ServerLimits.sends_in_flight)
    assert row["completed"] > 0 and row["errors"] == 0 and row["depth"] == 32


def _load_row(engine: str, mode: str, achieved: float, store: str = "memory") -> dict[str, Any]:
    return {
        "transport": "custom",
        "op": "send",
        "store": store,
        "mode": mode,
        "engine": engine,
        "offered_per_s": None if mode == "closed" else achieved,
        "achieved_per_s": achieved,
        "completed": 1000,
        "max_inflight": 128 if engine == "lean-frames" else 32,
        "depth": 32 if engine == "lean-frames" else 8,
        "p50_us": 300.0,
        "p99_us": 900.0,
        "p999_us": 1000.0,
        "server_cpu_us_per_op": 1e6 / achieved,
        "client_cpu_us_per_op": 3.0 if engine == "lean-frames" else 40.0,
        "server_cpu_util": 0.95 if engine == "lean-frames" else 0.5,
        "client_cpu_util": 0.1 if engine == "lean-frames" else 0.5,
    }


def test_saturation_and_its_targets_read_the_lean_generators_rows() -> None:
    """The product client's row may be the higher by noise; the saturation figure, the
    SQLite share and the report's headline row are still the lean generator's, and the
    product client's row stays in the table beside it."""
    from bench import targets
    from bench.report_load import load_section

    results = {
        "load": [
            _load_row("client", "closed", 20_000),
            _load_row("lean-frames", "closed", 50_000),
            _load_row("lean-frames", "open", 25_000),
            _load_row("client", "closed", 60_000, store="sqlite"),  # (noise)
            _load_row("lean-frames", "closed", 20_000, store="sqlite"),
        ]
    }
    best = targets.saturation(results, "custom")
    disk = targets.saturation(results, "custom", "sqlite")
    assert best is not None and best["achieved_per_s"] == 50_000
    assert disk is not None and disk["achieved_per_s"] == 20_000
    product = targets.client_saturation(results, "custom")
    assert product is not None and product["achieved_per_s"] == 20_000
    share = next(t for t in targets.evaluate_targets(results) if "SQLite" in t["name"])
    assert share["value"] == pytest.approx(0.4) and "lean frame generator" in share["detail"]
    text = load_section(results, [])
    assert "| custom | memory | lean frames | 128 | 50,000 |" in text
    assert "| custom | memory | product client (its own limit) | 32 | 20,000 |" in text
    assert "| custom | sqlite | lean frames | 128 | 20,000 |" in text
