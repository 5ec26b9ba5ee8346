"""The custom protocol's byte breakdown, on frames its own codec encodes."""

from __future__ import annotations

import random

import pytest

from bench.wire import CustomWireAccount, make_row, median_call
from bench.wire_relay import Count
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


# -- rows ----------------------------------------------------------------------------------
def sample(c2s: int, s2c: int, control: int = 0) -> dict[str, Count]:
    def count(size: int) -> Count:
        return Count(
            size,
            {"payload": size - control, "framing": 0, "headers": 0, "control": control},
            {"X": size},
        )

    return {"c2s": count(c2s), "s2c": count(s2c)}


def test_median_call_is_a_real_call_per_direction() -> None:
    samples = [sample(100, 50), sample(147, 40, control=13), sample(200, 45)]
    row = make_row("grpc", "send", "steady", samples, body_bytes=32, recipients=1, text="ascii")
    assert row["c2s_bytes"] == 147 and row["c2s_control"] == 13 and row["c2s_payload"] == 134
    assert row["s2c_bytes"] == 45 and row["s2c_control"] == 0
    assert row["samples"] == 3
    assert row["c2s_range"] == [100, 200] and row["c2s_mean"] == 149.0
    for d in ("c2s", "s2c"):
        parts = sum(row[f"{d}_{c}"] for c in ("payload", "framing", "headers", "control"))
        assert parts == row[f"{d}_bytes"]
    assert median_call([Count(3), Count(1), Count(2), Count(4)]).bytes == 2  # lower middle
