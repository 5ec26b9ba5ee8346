"""Property tests of the custom codec: every event round-trips, garbage only ever yields events
or ProtocolError, and a steady-state SEND stays within its byte budget."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transports.custom import (
    Accounts,
    Ack,
    Connection,
    ConnectionClosed,
    DeleteAccount,
    Deleted,
    Deliver,
    Error,
    ErrorCode,
    Hello,
    ListAccounts,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    Ping,
    Pong,
    ProtocolError,
    Role,
    Send,
    Sent,
    SignedUp,
    Signup,
    Welcome,
)
from transports.custom._events import NEED_DATA
from transports.custom._wire import MAX_BODY, MAX_FRAME, varint_size

WELCOME_BYTES = bytes.fromhex("0b 81 00 01 80 80 06 80 80 04 80 02")
HELLO_BYTES = bytes.fromhex("06 01 00 57 43 01 01")


def server() -> Connection:
    conn = Connection(Role.SERVER)
    conn.receive_data(HELLO_BYTES)
    conn.next_event()
    conn.send(Welcome(1, MAX_FRAME, MAX_BODY, 256))
    return conn


def client() -> Connection:
    conn = Connection(Role.CLIENT)
    conn.send(Hello())
    conn.receive_data(WELCOME_BYTES)
    conn.next_event()
    return conn


def decode_all(conn: Connection, data: bytes) -> list[object]:
    conn.receive_data(data)
    events = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


# -- strategies: every field over its whole wire range ---------------------------------------
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # no lone surrogates
names = st.lists(text, max_size=6).map(tuple)
rid = st.integers(1, 2**32 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
ack_ids = st.sets(u64, min_size=1, max_size=40).map(lambda ids: tuple(sorted(ids)))
body = st.one_of(text, st.text(st.characters(exclude_categories=("Cs",)), max_size=3000))
request_codes = st.sampled_from([c for c in ErrorCode if 0x10 <= c <= 0x1F])
any_code = st.one_of(st.sampled_from(list(ErrorCode)), st.integers(1, 255))

client_events = st.one_of(
    st.builds(Signup, rid, text, text),
    st.builds(Login, rid, text, text),
    st.builds(Logout, rid),
    st.builds(ListAccounts, rid, text, text, u32),
    st.builds(Send, rid, st.lists(text, min_size=1, max_size=8).map(tuple), body),
    st.builds(Ack, ack_ids),
    st.builds(DeleteAccount, rid, text),
    st.builds(Ping, rid, st.binary(max_size=200)),
)
server_events = st.one_of(
    st.builds(SignedUp, rid, u32),
    st.builds(LoggedIn, rid, u32),
    st.builds(LoggedOut, rid),
    st.builds(Accounts, rid, names, st.booleans()),
    st.builds(Sent, rid, u64, u64, names),
    st.builds(Deleted, rid),
    st.builds(Pong, rid, st.binary(max_size=200)),
    st.builds(Deliver, u64, u64, text, body),
    st.builds(Error, st.integers(0, 2**32 - 1), request_codes, text),
)


@given(st.lists(client_events, min_size=1, max_size=5), st.integers(1, 50))
def test_client_events_round_trip(events: list[object], chunk: int) -> None:
    sender, receiver = client(), server()
    stream = b"".join(sender.send(e) for e in events)
    got: list[object] = []
    for offset in range(0, len(stream), chunk):
        got += decode_all(receiver, stream[offset : offset + chunk])
    assert got == events
    assert receiver.buffered == 0


@given(st.lists(server_events, min_size=1, max_size=5), st.integers(1, 50))
def test_server_events_round_trip(events: list[object], chunk: int) -> None:
    sender, receiver = server(), client()
    stream = b"".join(sender.send(e) for e in events)
    got: list[object] = []
    for offset in range(0, len(stream), chunk):
        got += decode_all(receiver, stream[offset : offset + chunk])
    assert got == events


@given(any_code, text)
def test_any_error_code_round_trips(code: int, message: str) -> None:
    assert decode_all(client(), server().send(Error(0, code, message))) == [Error(0, code, message)]


# -- garbage in: events or ProtocolError, nothing else ----------------------------------------
def _only_events_or_protocol_error(conn: Connection, data: bytes, chunk: int) -> None:
    try:
        for offset in range(0, len(data), chunk):
            decode_all(conn, data[offset : offset + chunk])
        decode_all(conn, b"")
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        with pytest.raises(ProtocolError):
            conn.next_event()


FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=400), st.integers(1, 64))
def test_random_bytes_into_a_fresh_server(data: bytes, chunk: int) -> None:
    _only_events_or_protocol_error(Connection(Role.SERVER), data, chunk)


@FUZZ
@given(st.binary(max_size=400), st.integers(1, 64))
def test_random_bytes_after_the_handshake(data: bytes, chunk: int) -> None:
    _only_events_or_protocol_error(server(), data, chunk)
    _only_events_or_protocol_error(client(), data, chunk)


@FUZZ
@given(
    st.lists(client_events, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(1, 64),
)
def test_mutated_valid_streams(events: list[object], flips: list[tuple[int, int]], chunk: int):
    """Valid frames with a few bytes changed reach deep into every decoder."""
    sender = client()
    data = bytearray(b"".join(sender.send(e) for e in events))
    for position, value in flips:
        data[position % len(data)] = value
    _only_events_or_protocol_error(server(), bytes(data), chunk)


# -- the byte budget (PROTOCOL.md section 11) -------------------------------------------------
def send_cost(request_id: int, recipients: tuple[str, ...], body: bytes) -> int:
    """PROTOCOL.md's formula for a SEND frame, transcribed."""
    length = 1 + varint_size(request_id) + varint_size(len(recipients))
    for name in recipients:
        size = len(name.encode())
        length += varint_size(size) + size
    length += len(body)
    return varint_size(length) + length


BODY_SIZES = sorted({*range(0, 260), *range(16_370, 16_400), *range(MAX_BODY - 40, MAX_BODY + 1)})


@pytest.mark.parametrize("name_size", [1, 2, 8, 31, 32])
def test_steady_state_send_costs_at_most_body_plus_name_plus_8(name_size: int) -> None:
    """Rule of the brief: len(B) + len(N) + 8 bytes client-to-server, for every B <= 64 KiB,
    with the request id the client reuses in steady state (the lowest free one: 1)."""
    conn = client()
    name = "n" * name_size
    body = "b" * MAX_BODY
    for size in BODY_SIZES:
        frame = conn.send(Send(1, (name,), body[:size]))
        assert len(frame) == send_cost(1, (name,), body[:size].encode())
        assert len(frame) <= size + name_size + 8, (size, len(frame))


@settings(max_examples=200)
@given(
    st.lists(text.filter(bool), min_size=1, max_size=5, unique=True),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=2000),
    rid,
)
def test_send_cost_formula_holds_for_any_send(recipients: list[str], text_body: str, r: int):
    frame = client().send(Send(r, tuple(recipients), text_body))
    assert len(frame) == send_cost(r, tuple(recipients), text_body.encode())
