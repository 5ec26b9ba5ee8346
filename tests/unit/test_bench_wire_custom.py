"""The custom protocol's byte counter (transports/custom/_bytes.py), on frames its own codec
encodes; and how bench/wire_rows.py builds a row from calls."""

from __future__ import annotations

import random

import pytest

from bench.wire_relay import Count
from bench.wire_rows import Call, Conn, make_row, median_call
from transports.custom import (
    Ack,
    Connection,
    Deliver,
    Error,
    ErrorCode,
    Hello,
    Ping,
    Pong,
    Role,
    Send,
    Sent,
    SignedUp,
    Signup,
    Welcome,
)
from transports.custom._bytes import CustomWireAccount
from transports.custom._wire import MAX_BODY, MAX_FRAME, MAX_RECIPIENTS, PROTOCOL_VERSION


def handshaken() -> tuple[Connection, Connection, bytes, bytes]:
    """A client and a server codec past the handshake, and the HELLO and WELCOME frames."""
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    hello = client.send(Hello())
    server.receive_data(hello)
    server.next_event()
    welcome = server.send(Welcome(PROTOCOL_VERSION, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS))
    client.receive_data(welcome)
    client.next_event()
    return client, server, hello, welcome


def chunked(data: bytes, seed: int) -> list[bytes]:
    rng, out, pos = random.Random(seed), [], 0
    while pos < len(data):
        step = rng.randint(1, 50)
        out.append(data[pos : pos + step])
        pos += step
    return out


def feed(chunks: list[bytes], *, client_to_server: bool) -> CustomWireAccount:
    account = CustomWireAccount(client_to_server=client_to_server)
    for chunk in chunks:
        account.receive_data(chunk)
    return account


def test_frame_layout_is_what_the_breakdown_assumes() -> None:
    # PROTOCOL.md: length varint | opcode | request id varint | body. SIGNUP(1, "alice", "pw"):
    # body = (1 + 5) + (1 + 2) = 9, envelope = 1 + 1 + 1 = 3.
    client, *_ = handshaken()
    frame = client.send(Signup(1, "alice", "pw"))
    assert frame == bytes([11, 0x02, 1, 5]) + b"alice" + bytes([2]) + b"pw"


def client_stream() -> tuple[bytes, dict[str, int]]:
    client, _, hello, _ = handshaken()
    signup = client.send(Signup(1, "alice", "pw"))  # envelope 3, body 9
    big = client.send(Send(300, ("bob",), "b" * 200))  # length 2 + opcode + id 2; body 1+4+200
    ack = client.send(Ack((7, 9)))  # envelope 3 (id 0); body: count + 7 + delta 2
    ping = client.send(Ping(2, b"x"))  # control
    data = hello + signup + big + ack + ping
    expected = {
        "payload": 9 + (1 + 4 + 200) + 3,
        "framing": 3 + 5 + 3,
        "headers": 0,
        "control": len(hello) + len(ping),
    }
    assert sum(expected.values()) == len(data)
    return data, expected


def server_stream() -> tuple[bytes, dict[str, int]]:
    _, server, _, welcome = handshaken()
    signed_up = server.send(SignedUp(1, 0))  # envelope 3, body 1
    sent = server.send(Sent(1, 5, 1_764_000_000_000))  # body: id 1 + time 6 + count 1
    deliver = server.send(Deliver(5, 1_764_000_000_000, "alice", "hi"))  # body 1+6+6+2
    refused = server.send(Error(4, ErrorCode.NOT_LOGGED_IN, "log in first"))  # a response
    pong = server.send(Pong(2, b"x"))
    notice = server.send(Error(0, ErrorCode.SHUTDOWN, "bye"))  # request id 0: control
    data = welcome + signed_up + sent + deliver + refused + pong + notice
    expected = {
        "payload": 1 + 8 + 15 + (1 + 12),
        "framing": 3 * 4,
        "headers": 0,
        "control": len(welcome) + len(pong) + len(notice),
    }
    assert sum(expected.values()) == len(data)
    return data, expected


@pytest.mark.parametrize("client_to_server", [True, False], ids=["c2s", "s2c"])
@pytest.mark.parametrize("how", ["whole", "bytewise", "chunks1", "chunks2"])
def test_every_byte_is_classified_however_it_arrives(client_to_server: bool, how: str) -> None:
    data, expected = client_stream() if client_to_server else server_stream()
    chunks = {
        "whole": [data],
        "bytewise": [data[i : i + 1] for i in range(len(data))],
        "chunks1": chunked(data, 1),
        "chunks2": chunked(data, 2),
    }[how]
    account = feed(chunks, client_to_server=client_to_server)
    assert dict(account.totals) == expected
    assert account.pending == 0
    assert sum(account.by_kind.values()) == len(data)


def test_a_partial_frame_waits_and_an_unknown_opcode_is_refused() -> None:
    client, _, hello, _ = handshaken()
    frame = client.send(Signup(1, "alice", "pw"))
    account = CustomWireAccount(client_to_server=True)
    account.receive_data(hello + frame[:5])
    assert account.pending == 5
    account.receive_data(frame[5:])
    assert account.pending == 0
    with pytest.raises(Exception, match=r"(?i)opcode"):
        account.receive_data(bytes([2, 0x7E, 1]))


def test_error_notices_are_control_and_error_replies_are_not() -> None:
    data, _ = server_stream()
    account = feed([data], client_to_server=False)
    assert account.by_kind["ERROR_NOTICE"] > 0
    assert account.by_kind["ERROR"] > 0


def test_request_ids_are_noted_for_the_bench() -> None:
    client, _, hello, _ = handshaken()
    account = CustomWireAccount(client_to_server=True)
    account.receive_data(hello + client.send(Signup(300, "alice", "pw")))
    assert account.last_ids == {"request": 300}
    account.receive_data(client.send(Ack((7,))))  # request id 0: no request
    assert account.last_ids == {"request": 300}


# -- rows ----------------------------------------------------------------------------------
def count(size: int, control: int = 0, kinds: dict[str, int] | None = None) -> Count:
    return Count(
        size,
        {"payload": size - control, "framing": 0, "headers": 0, "control": control},
        kinds if kinds is not None else {"X": size},
    )


def calls_on_one_connection(*samples: dict[str, Count]) -> list[Call]:
    """Calls made one after another on one (closed) connection, one per sample."""
    conn = Conn(relay=None, client=None)  # type: ignore[arg-type]
    calls = []
    for epoch, sample in enumerate(samples, start=1):
        conn.by_epoch[epoch] = sample
        conn.epochs.append(epoch)
        calls.append(Call(conn, epoch, message_id=100 + epoch, request_id=epoch))
    conn.closed = True
    return calls


def test_median_call_is_a_real_call_per_direction() -> None:
    calls = calls_on_one_connection(
        {"c2s": count(100), "s2c": count(50)},
        {"c2s": count(147, control=13), "s2c": count(40)},
        {"c2s": count(200), "s2c": count(45)},
    )
    row = make_row("grpc", "send", "steady", calls, body_bytes=32, recipients=1, text="ascii")
    assert row["c2s_bytes"] == 147 and row["c2s_control"] == 13 and row["c2s_payload"] == 134
    assert row["s2c_bytes"] == 45 and row["s2c_control"] == 0
    assert row["samples"] == 3 and row["with_connection_frames"] == 0
    assert row["c2s_range"] == [100, 200] and row["c2s_mean"] == 149.0
    for d in ("c2s", "s2c"):
        parts = sum(row[f"{d}_{c}"] for c in ("payload", "framing", "headers", "control"))
        assert parts == row[f"{d}_bytes"]
    assert median_call([Count(3), Count(1), Count(2), Count(4)]).bytes == 2  # lower middle
    assert row["holds_for"] == "message ids 0..127; request ids 0..127"


WINDOW = {"WINDOW_UPDATE": 13, "WINDOW_UPDATE_STREAM": 13}
CONNECTION_KINDS = frozenset({"PING", "PING_ACK", "WINDOW_UPDATE", "WINDOW_UPDATE_STREAM"})


def test_the_connections_frames_are_never_in_a_headline() -> None:
    # grpc-core writes a call's credit with it, with the next call, or not at all, and pings
    # on a timer: the headline is the call's own frames, the same in every call.
    plain = {"c2s": count(100), "s2c": count(50)}
    calls = calls_on_one_connection(
        plain,
        {"c2s": count(126, control=26, kinds={"X": 100, **WINDOW}), "s2c": count(50)},
        {"c2s": count(117, control=17, kinds={"X": 100, "PING": 17}), "s2c": count(50)},
        plain,
    )
    row = make_row("grpc", "send", "steady", calls, connection_kinds=CONNECTION_KINDS)
    assert row["samples"] == 4 and row["with_connection_frames"] == 2
    assert row["c2s_bytes"] == 100 and row["c2s_range"] == [100, 100]
    assert row["c2s_control"] == 0 and set(row["c2s_detail"]) == {"X"}
    assert row["c2s_connection_mean"] == pytest.approx((26 + 17) / 4, abs=0.06)
    assert row["c2s_mean_all"] == pytest.approx((2 * 100 + 126 + 117) / 4, abs=0.06)


def test_connect_keeps_the_handshakes_control_frames() -> None:
    # SETTINGS, their ACKs and the initial WINDOW_UPDATE are what connect() causes.
    handshake = {"PREFACE": 24, "SETTINGS": 45, "SETTINGS_ACK": 9, "WINDOW_UPDATE": 13}
    calls = calls_on_one_connection(
        {"c2s": count(91, control=91, kinds=handshake), "s2c": count(9)}
    )
    kinds = CONNECTION_KINDS | {"SETTINGS", "SETTINGS_ACK"}
    row = make_row("grpc", "connect", "first", calls, connection_kinds=kinds)
    assert row["c2s_bytes"] == row["c2s_control"] == 91
    assert row["with_connection_frames"] == 0
    close = make_row("grpc", "close", "first", calls, connection_kinds=kinds)
    assert close["c2s_bytes"] == 24 and close["c2s_connection_mean"] == 91 - 24
