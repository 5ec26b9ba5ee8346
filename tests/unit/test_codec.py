"""The custom protocol's sans-IO codec, with plain bytes: framing, every message, every error.

Every vector is fed whole, one byte at a time, and followed by the first bytes of the next
frame (h11's test_io habit): the three ways a non-blocking reader meets a frame.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from transports.custom import (
    HANDSHAKE,
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
    Kind,
    ListAccounts,
    LocalProtocolError,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    Phase,
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
from transports.custom._wire import MAX_FRAME, S2C_SLACK, put_varint, varint_size

HELLO = bytes.fromhex("06 01 00 57 43 01 01")
WELCOME = Welcome(1, MAX_FRAME, 65536, 256)
WELCOME_BYTES = bytes.fromhex("0b 81 00 01 80 80 06 80 80 04 80 02")


def server_after_hello() -> Connection:
    conn = Connection(Role.SERVER)
    conn.receive_data(HELLO)
    assert conn.next_event() == Hello(1, 1)
    conn.send(WELCOME)
    return conn


def client_after_welcome() -> Connection:
    conn = Connection(Role.CLIENT)
    conn.send(Hello())
    conn.receive_data(WELCOME_BYTES)
    assert conn.next_event() == WELCOME
    return conn


def drain(conn: Connection) -> list[object]:
    events = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


def feed_whole(conn: Connection, data: bytes) -> list[object]:
    conn.receive_data(data)
    return drain(conn)


def feed_bytewise(conn: Connection, data: bytes) -> list[object]:
    events: list[object] = []
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
        events += drain(conn)
    return events


C2S_EVENTS = [
    Signup(1, "alice", "correct horse"),
    Login(2, "bob", "pässwörd"),
    Logout(3),
    ListAccounts(4, "a*", "", 0),
    ListAccounts(300, "?ob", "alice", 500),
    Send(1, ("bob",), "hi"),
    Send(2**32 - 1, ("bob", "carol", "ünïcode"), "x" * 70_000),
    Send(5, ("bob",), ""),  # an empty body is the service's error, not the codec's
    Ack((1,)),
    Ack((5, 6, 9, 2**40)),
    DeleteAccount(9, "alice"),
    Ping(1, b""),
    Ping(2, bytes(range(256))),
]
S2C_EVENTS = [
    SignedUp(1, 0),
    LoggedIn(2, 12345),
    LoggedOut(3),
    Accounts(4, ("alice", "bob"), True),
    Accounts(4, (), False),
    Sent(5, 42, 1_760_000_000_000, ()),
    Sent(5, 0, 1_760_000_000_000, ("ghost", "nobody")),
    Deleted(6),
    Pong(7, b"\x00\xff"),
    Deliver(2**63 - 1, 1_760_000_000_000, "alice", "héllo 👋"),
    Error(8, ErrorCode.USERNAME_TAKEN, "the username 'alice' is taken"),
    Error(0, ErrorCode.NOT_LOGGED_IN, ""),
    Error(9, 0x1E, "a request-level code of a later version"),
]


@pytest.mark.parametrize("event", C2S_EVENTS, ids=repr)
@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])
def test_client_events_round_trip(event: object, feed) -> None:
    data = client_after_welcome().send(event)
    assert feed(server_after_hello(), data) == [event]


@pytest.mark.parametrize("event", S2C_EVENTS, ids=repr)
@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])
def test_server_events_round_trip(event: object, feed) -> None:
    data = server_after_hello().send(event)
    assert feed(client_after_welcome(), data) == [event]


@pytest.mark.parametrize("event", C2S_EVENTS, ids=repr)
def test_frame_followed_by_part_of_the_next(event: object) -> None:
    client = client_after_welcome()
    data, after = client.send(event), client.send(Ping(7, b"next"))
    server = server_after_hello()
    assert feed_whole(server, data + after[:3]) == [event]
    assert server.buffered == 3
    assert feed_whole(server, after[3:]) == [Ping(7, b"next")]
    assert server.buffered == 0


def test_handshake_vectors() -> None:
    client = Connection(Role.CLIENT)
    assert client.send(Hello()) == HELLO
    server = Connection(Role.SERVER)
    assert feed_whole(server, HELLO) == [Hello(1, 1)]
    assert server.version == 1
    welcome = server.send(WELCOME)
    assert welcome == WELCOME_BYTES
    assert server.phase is Phase.OPEN
    assert feed_whole(client, welcome) == [WELCOME]
    assert client.phase is Phase.OPEN
    assert client.peer_max_frame == MAX_FRAME


def test_login_pipelined_behind_hello() -> None:
    client = Connection(Role.CLIENT)
    data = client.send(Hello()) + client.send(Login(1, "alice", "pw"))
    server = Connection(Role.SERVER)
    assert feed_whole(server, data) == [Hello(1, 1), Login(1, "alice", "pw")]


def test_steady_state_send_vector() -> None:
    frame = client_after_welcome().send(Send(1, ("bob",), "hi"))
    assert frame == bytes.fromhex("09 06 01 01 03 62 6f 62 68 69")


def test_ack_is_delta_encoded() -> None:
    frame = client_after_welcome().send(Ack((1000, 1001, 1005)))
    assert frame == bytes.fromhex("07 07 00 03 e8 07 01 04")


def test_clean_end_of_stream_is_an_event() -> None:
    server = server_after_hello()
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()


# -- garbage: (role, bytes after the handshake or from the start, expected code) --------------
def frame(*parts: bytes) -> bytes:
    body = b"".join(parts)
    head = bytearray()
    put_varint(head, len(body))
    return bytes(head) + body


def v(value: int) -> bytes:
    out = bytearray()
    put_varint(out, value)
    return bytes(out)


MALFORMED, TOO_LARGE, VERSION, OPCODE, HANDSHAKE_, UTF8 = (
    ErrorCode.MALFORMED,
    ErrorCode.FRAME_TOO_LARGE,
    ErrorCode.UNSUPPORTED_VERSION,
    ErrorCode.UNKNOWN_OPCODE,
    ErrorCode.BAD_HANDSHAKE,
    ErrorCode.INVALID_UTF8,
)

# Fed to a server that has completed the handshake.
SERVER_GARBAGE = {
    "length varint not minimal": (b"\x80\x00", MALFORMED),
    "length varint over 5 bytes": (b"\xff\xff\xff\xff\xff\x01", MALFORMED),
    "length over 2^32-1": (b"\x80\x80\x80\x80\x10", MALFORMED),
    "length over the limit": (v(MAX_FRAME + 1), TOO_LARGE),
    "empty frame": (b"\x00", MALFORMED),
    "frame without request id": (b"\x01\x04", MALFORMED),
    "unknown opcode": (frame(b"\x42\x01"), OPCODE),
    "server opcode sent by a client": (frame(b"\x83\x01\x00"), OPCODE),
    "request id 0": (frame(b"\x04\x00"), MALFORMED),
    "request id not minimal": (frame(b"\x04\x81\x00"), MALFORMED),
    "request id over 2^32-1": (frame(b"\x04\x80\x80\x80\x80\x10"), MALFORMED),
    "trailing byte": (frame(b"\x04\x01\x00"), MALFORMED),
    "string past the end": (frame(b"\x03\x01\x05ab"), MALFORMED),
    "missing password": (frame(b"\x03\x01\x01a"), MALFORMED),
    "username not UTF-8": (frame(b"\x03\x01\x02\xc3\x28\x01p"), UTF8),
    "overlong UTF-8": (frame(b"\x03\x01\x02\xc0\xaf\x01p"), UTF8),
    "surrogate in UTF-8": (frame(b"\x03\x01\x03\xed\xa0\x80\x01p"), UTF8),
    "send to no one": (frame(b"\x06\x01\x00hi"), MALFORMED),
    "send to 257": (frame(b"\x06\x01" + v(257) + b"\x01a" * 257 + b"hi"), MALFORMED),
    "send body not UTF-8": (frame(b"\x06\x01\x01\x03bob\xff"), UTF8),
    "ack with a request id": (frame(b"\x07\x01\x01\x05"), MALFORMED),
    "ack of nothing": (frame(b"\x07\x00\x00"), MALFORMED),
    "ack of 1025": (frame(b"\x07\x00" + v(1025) + b"\x01" * 1025), MALFORMED),
    "ack delta 0": (frame(b"\x07\x00\x02\x05\x00"), MALFORMED),
    "ack id over 2^64-1": (frame(b"\x07\x00\x02" + v(2**64 - 1) + b"\x01"), MALFORMED),
    "ack count past the end": (frame(b"\x07\x00\x03\x05\x01"), MALFORMED),
    "second HELLO": (HELLO, HANDSHAKE_),
    "list limit over 2^32-1": (frame(b"\x05\x01\x01*\x00" + v(2**32)), MALFORMED),
}

# Fed to a fresh server (the first frame).
FIRST_FRAME_GARBAGE = {
    "request before HELLO": (frame(b"\x03\x01\x01a\x01b"), HANDSHAKE_),
    "unknown opcode before HELLO": (frame(b"\x42\x00"), HANDSHAKE_),
    "bad magic": (frame(b"\x01\x00WX\x01\x01"), HANDSHAKE_),
    "HELLO with a request id": (frame(b"\x01\x01WC\x01\x01"), HANDSHAKE_),
    "HELLO without versions": (frame(b"\x01\x00WC"), MALFORMED),
    "version range reversed": (frame(b"\x01\x00WC\x02\x01"), HANDSHAKE_),
    "version 0": (frame(b"\x01\x00WC\x00\x00"), HANDSHAKE_),
    "only later versions": (frame(b"\x01\x00WC\x05\x06"), VERSION),
    "HTTP request": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 60, HANDSHAKE_),
    "oversized first frame": (b"\xff\xff\x7f", TOO_LARGE),
}

# Fed to a client that has completed the handshake.
CLIENT_GARBAGE = {
    "WELCOME twice": (frame(b"\x81\x00\x01" + v(MAX_FRAME) + v(65536) + v(256)), HANDSHAKE_),
    "client opcode sent by a server": (frame(b"\x03\x01\x01a\x01b"), OPCODE),
    "more is 2": (frame(b"\x85\x01\x02\x00"), MALFORMED),
    "error code 0": (frame(b"\xff\x01\x00oops"), MALFORMED),
    "deliver with a request id": (frame(b"\xa0\x01\x01\x01\x01a"), MALFORMED),
    "names past the end": (frame(b"\x85\x01\x00\x05\x01a"), MALFORMED),
    "frame over the advertised limit": (v(MAX_FRAME + S2C_SLACK + 1), TOO_LARGE),
    "error text not UTF-8": (frame(b"\xff\x00\x01\xff"), UTF8),
}


def _expect(conn: Connection, data: bytes, code: ErrorCode, feed) -> None:
    with pytest.raises(ProtocolError) as info:
        feed(conn, data)
    assert info.value.code is code, info.value
    with pytest.raises(ProtocolError):  # sticky: the stream cannot be trusted any more
        conn.next_event()


@pytest.mark.parametrize("name", SERVER_GARBAGE)
@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])
def test_server_rejects(name: str, feed) -> None:
    data, code = SERVER_GARBAGE[name]
    _expect(server_after_hello(), data, code, feed)


@pytest.mark.parametrize("name", FIRST_FRAME_GARBAGE)
@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])
def test_server_rejects_first_frame(name: str, feed) -> None:
    data, code = FIRST_FRAME_GARBAGE[name]
    _expect(Connection(Role.SERVER), data, code, feed)


@pytest.mark.parametrize("name", CLIENT_GARBAGE)
@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])
def test_client_rejects(name: str, feed) -> None:
    data, code = CLIENT_GARBAGE[name]
    _expect(client_after_welcome(), data, code, feed)


def test_client_rejects_a_version_it_did_not_offer() -> None:
    client = Connection(Role.CLIENT)
    client.send(Hello(1, 1))
    _expect(client, frame(b"\x81\x00\x02\x01\x01\x01"), VERSION, feed_whole)


def test_client_rejects_responses_before_welcome() -> None:
    client = Connection(Role.CLIENT)
    client.send(Hello())
    _expect(client, frame(b"\x84\x01"), HANDSHAKE_, feed_whole)


def test_oversized_length_is_refused_before_the_body_arrives() -> None:
    server = server_after_hello()
    server.receive_data(v(MAX_FRAME + 1))  # nothing of the body yet
    with pytest.raises(ProtocolError) as info:
        server.next_event()
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE


def test_end_of_stream_inside_a_frame_is_malformed() -> None:
    server = server_after_hello()
    server.receive_data(frame(b"\x09\x01hello")[:-2])
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    with pytest.raises(ProtocolError) as info:
        server.next_event()
    assert info.value.code is ErrorCode.MALFORMED


def test_frames_of_exactly_the_limit_are_accepted() -> None:
    server = server_after_hello()
    payload = b"p" * (MAX_FRAME - 2)  # opcode + 1-byte request id + payload = MAX_FRAME
    assert feed_whole(server, frame(b"\x09\x01" + payload)) == [Ping(1, payload)]


def test_after_a_protocol_error_only_an_error_can_be_sent() -> None:
    server = Connection(Role.SERVER)
    with pytest.raises(ProtocolError):
        feed_whole(server, frame(b"\x04\x01"))
    with pytest.raises(LocalProtocolError):
        server.send(Welcome(1, MAX_FRAME, 65536, 256))
    data = server.send(Error(0, ErrorCode.BAD_HANDSHAKE, "the first frame must be HELLO"))
    assert data[:4] == bytes.fromhex("20 ff 00 05")
    assert server.phase is Phase.CLOSED
    with pytest.raises(LocalProtocolError):
        server.send(Error(0, ErrorCode.INTERNAL, ""))


def test_a_connection_ending_error_closes_both_sides() -> None:
    server, client = server_after_hello(), client_after_welcome()
    data = server.send(Error(0, ErrorCode.SHUTDOWN, "the server is shutting down"))
    assert feed_whole(client, data) == [Error(0, ErrorCode.SHUTDOWN, "the server is shutting down")]
    assert server.phase is Phase.CLOSED and client.phase is Phase.CLOSED
    with pytest.raises(LocalProtocolError):
        client.send(Logout(1))


def test_request_level_errors_keep_the_connection_open() -> None:
    server, client = server_after_hello(), client_after_welcome()
    data = server.send(Error(1, ErrorCode.AUTH_FAILED, "wrong username or password"))
    feed_whole(client, data)
    assert server.phase is Phase.OPEN and client.phase is Phase.OPEN


# -- the handshake table, every pair ---------------------------------------------------------
KIND_SAMPLES: dict[Kind, tuple[Role, object]] = {
    Kind.HELLO: (Role.CLIENT, Hello()),
    Kind.REQUEST: (Role.CLIENT, Logout(1)),
    Kind.WELCOME: (Role.SERVER, WELCOME),
    Kind.RESPONSE: (Role.SERVER, LoggedOut(1)),
    Kind.ERROR: (Role.SERVER, Error(1, ErrorCode.NOT_LOGGED_IN, "log in first")),
}


def _connection_in(role: Role, phase: Phase) -> Connection:
    conn = Connection(role)
    if phase is Phase.START:
        return conn
    peer = Connection(Role.SERVER if role is Role.CLIENT else Role.CLIENT)
    if role is Role.CLIENT:
        conn.send(Hello())
    else:
        conn.receive_data(peer.send(Hello()))
        conn.next_event()
    if phase is Phase.OPEN:
        if role is Role.SERVER:
            conn.send(WELCOME)
        else:
            conn.receive_data(WELCOME_BYTES)
            conn.next_event()
    if phase is Phase.CLOSED:
        conn.phase = Phase.CLOSED
    assert conn.phase is phase
    return conn


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("kind", list(Kind))
def test_every_handshake_pair_on_the_sending_side(phase: Phase, kind: Kind) -> None:
    role, event = KIND_SAMPLES[kind]
    conn = _connection_in(role, phase)
    allowed = (phase, kind) in HANDSHAKE
    if allowed:
        conn.send(event)
        assert conn.phase is HANDSHAKE[(phase, kind)]
    else:
        with pytest.raises(LocalProtocolError):
            conn.send(event)
        assert conn.phase is phase


@pytest.mark.parametrize("phase", [Phase.START, Phase.GREETED, Phase.OPEN])
@pytest.mark.parametrize("kind", list(Kind))
def test_every_handshake_pair_on_the_receiving_side(phase: Phase, kind: Kind) -> None:
    sender_role, event = KIND_SAMPLES[kind]
    receiver_role = Role.SERVER if sender_role is Role.CLIENT else Role.CLIENT
    conn = _connection_in(receiver_role, phase)
    sender_phase = {Kind.HELLO: Phase.START, Kind.WELCOME: Phase.GREETED}.get(kind, Phase.OPEN)
    sender = _connection_in(sender_role, sender_phase)
    data = sender.send(event)
    if (phase, kind) in HANDSHAKE:
        assert feed_whole(conn, data) == [event]
        assert conn.phase is HANDSHAKE[(phase, kind)]
    else:
        with pytest.raises(ProtocolError) as info:
            feed_whole(conn, data)
        assert info.value.code is ErrorCode.BAD_HANDSHAKE


# -- what the codec refuses to send -----------------------------------------------------------
@pytest.mark.parametrize(
    "event",
    [
        Logout(0),
        Logout(2**32),
        Send(1, (), "hi"),
        Send(1, tuple(f"u{i}" for i in range(257)), "hi"),
        Send(1, ("bob",), "\ud800"),  # a lone surrogate has no UTF-8 form
        Send(1, ("bob",), "x" * MAX_FRAME),
        Ack(()),
        Ack((5, 5)),
        Ack((6, 5)),
        Ack(tuple(range(1, 1026))),
        Ack((-1,)),
        ListAccounts(1, "*", "", -1),
        Welcome(1, MAX_FRAME, 65536, 256),  # a server message
    ],
    ids=lambda e: type(e).__name__,
)
def test_unsendable_events(event: object) -> None:
    with pytest.raises(LocalProtocolError):
        client_after_welcome().send(event)


def test_requests_cannot_precede_hello() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(Role.CLIENT).send(Logout(1))


# -- buffer management --------------------------------------------------------------------
def test_a_long_pipelined_stream_keeps_the_buffer_small() -> None:
    client, server = client_after_welcome(), server_after_hello()
    stream = b"".join(client.send(Ping(1 + i % 100, b"x" * 40)) for i in range(20_000))
    events = 0
    largest = 0
    for offset in range(0, len(stream), 4096):  # reads that split frames anywhere
        server.receive_data(stream[offset : offset + 4096])
        events += len(drain(server))
        largest = max(largest, len(server._buf))
    assert events == 20_000
    assert largest < 64 * 1024 + 4096 + 64  # compaction threshold + one read + a partial frame


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**32 - 1, 2**63, 2**64 - 1]
)
def test_varint_boundaries(value: int) -> None:
    out = bytearray()
    put_varint(out, value)
    assert len(out) == varint_size(value)
    assert out[-1] != 0 or value == 0  # minimal
    decoded = sum((b & 0x7F) << (7 * i) for i, b in enumerate(out))
    assert decoded == value


@pytest.mark.parametrize("module", ["_wire", "_events", "_messages", "_codec", "_errors"])
def test_the_codec_does_no_io(module: str) -> None:
    """Sans-IO: the codec modules import no socket, asyncio or selectors."""
    source = Path(importlib.import_module(f"transports.custom.{module}").__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "asyncio", "selectors", "ssl"}
