"""The protobuf-tcp codec with plain bytes: vectors, the handshake against the custom protocol,
malformed bodies, what cannot be sent, and the byte cost against the custom codec.

Every vector is fed whole, one byte at a time, and followed by the first bytes of the next
frame (h11's test_io habit), and re-encodes to the same bytes.
"""

from __future__ import annotations

from typing import Any

import pytest

from transports import custom
from transports.custom._events import (
    NEED_DATA,
    Accounts,
    Ack,
    ConnectionClosed,
    DeleteAccount,
    Deleted,
    Deliver,
    Error,
    Hello,
    ListAccounts,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    Ping,
    Pong,
    Send,
    Sent,
    SignedUp,
    Signup,
    Welcome,
)
from transports.custom._wire import (
    MAX_BODY,
    MAX_FRAME,
    MAX_RECIPIENTS,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    put_varint,
)
from transports.protobuf_tcp._codec import Connection, Phase, Role

HELLO_BYTES = bytes.fromhex("06 01 00 57 50 01 01")
CUSTOM_HELLO_BYTES = bytes.fromhex("06 01 00 57 43 01 01")
WELCOME = Welcome(1, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)
WELCOME_BYTES = bytes.fromhex("0f 81 00 08 01 10 80 80 06 18 80 80 04 20 80 02")


def server_after_hello() -> Connection:
    conn = Connection(Role.SERVER)
    conn.receive_data(HELLO_BYTES)
    assert conn.next_event() == Hello(1, 1)
    assert conn.send(WELCOME) == WELCOME_BYTES
    return conn


def client_after_welcome() -> Connection:
    conn = Connection(Role.CLIENT)
    assert conn.send(Hello()) == HELLO_BYTES
    conn.receive_data(WELCOME_BYTES)
    assert conn.next_event() == WELCOME
    return conn


def drain(conn: Any) -> list[object]:
    events = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


def feed(conn: Any, data: bytes, *, bytewise: bool = False) -> list[object]:
    events: list[object] = []
    for chunk in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
        conn.receive_data(chunk)
        events += drain(conn)
    return events


def frame(opcode: int, rid: int, body: bytes) -> bytes:
    inner = bytearray([opcode])
    put_varint(inner, rid)
    inner += body
    out = bytearray()
    put_varint(out, len(inner))
    return bytes(out + inner)


# -- vectors: (event, the frame's bytes) --------------------------------------------------------
C2S = [
    (Signup(1, "alice", "pw"), "0d 02 01 0a 05 616c696365 12 02 7077"),
    (Login(2, "bob", "hunter2"), "10 03 02 0a 03 626f62 12 07 68756e74657232"),
    (Logout(3), "02 04 03"),
    (ListAccounts(4, "a*", "", 0), "06 05 04 0a 02 612a"),
    (ListAccounts(300, "", "bob", 500), "0b 05 ac02 12 03 626f62 18 f403"),
    (Send(1, ("bob",), "hi"), "0b 06 01 0a 03 626f62 12 02 6869"),
    (Send(1, ("bob", "éa"), ""), "0c 06 01 0a 03 626f62 0a 03 c3a961"),  # empty body: no field
    (Ack((1000,)), "06 07 00 0a 02 e807"),
    (Ack((5, 6, 300)), "08 07 00 0a 04 05 06 ac02"),
    (DeleteAccount(9, "alice"), "09 08 09 0a 05 616c696365"),
    (Ping(5, b""), "02 09 05"),
    (Ping(5, b"\xff\x00"), "06 09 05 0a 02 ff00"),
]
S2C = [
    (SignedUp(1, 0), "02 82 01"),
    (LoggedIn(2, 3), "04 83 02 18 03"),
    (LoggedOut(3), "02 84 03"),
    (Accounts(4, ("alice", "bob"), True), "10 85 04 0a 05 616c696365 0a 03 626f62 10 01"),
    (Accounts(4, (), False), "02 85 04"),
    (Sent(1, 1000, 1767225600000, ()), "0c 86 01 08 e807 10 80d0eab6b733"),
    (Sent(1, 0, 1767225600000, ("ghost",)), "10 86 01 10 80d0eab6b733 1a 05 67686f7374"),
    (Deleted(4), "02 88 04"),
    (Pong(5, b"ping"), "08 89 05 0a 04 70696e67"),
    (
        Deliver(1000, 1767225600000, "alice", "héllo 👋"),
        "20 a0 00 08 e807 10 80d0eab6b733 1a 05 616c696365 22 0b 68c3a96c6c6f20f09f918b",
    ),
    (Error(1, ErrorCode.AUTH_FAILED, "no"), "08 ff 01 08 13 12 02 6e6f"),
    (Error(0, ErrorCode.NOT_LOGGED_IN, ""), "04 ff 00 08 14"),
    (Error(7, 0x1E, "later"), "0b ff 07 08 1e 12 05 6c61746572"),  # a code of a later version
]


@pytest.mark.parametrize(("event", "hexdata"), C2S, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("bytewise", [False, True])
def test_client_vector(event: Any, hexdata: str, bytewise: bool) -> None:
    data = bytes.fromhex(hexdata)
    assert client_after_welcome().send(event) == data
    server = server_after_hello()
    assert feed(server, data + b"\x05\x06", bytewise=bytewise) == [event]
    assert server.buffered == 2  # the start of the next frame waits


@pytest.mark.parametrize(("event", "hexdata"), S2C, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("bytewise", [False, True])
def test_server_vector(event: Any, hexdata: str, bytewise: bool) -> None:
    data = bytes.fromhex(hexdata)
    assert server_after_hello().send(event) == data
    client = client_after_welcome()
    assert feed(client, data + b"\x05\x86", bytewise=bytewise) == [event]
    assert client.buffered == 2


def test_pipelined_frames_in_one_chunk() -> None:
    data = b"".join(bytes.fromhex(h) for _, h in C2S)
    assert feed(server_after_hello(), HELLO_BYTES[:0] + data) == [e for e, _ in C2S]


def test_clean_end_and_cut_frame() -> None:
    server = server_after_hello()
    server.receive_data(bytes.fromhex(C2S[0][1]))
    server.receive_data(b"")
    assert drain(server) == [C2S[0][0], ConnectionClosed()]
    server = server_after_hello()
    server.receive_data(bytes.fromhex(C2S[0][1])[:-1])
    server.receive_data(b"")
    with pytest.raises(ProtocolError) as info:
        drain(server)
    assert info.value.code is ErrorCode.MALFORMED


def test_table_has_the_custom_opcodes_and_kinds() -> None:
    """The custom handshake table applies only if every opcode has the same kind."""
    from transports.custom import _messages
    from transports.protobuf_tcp import _bodies

    def shape(specs: Any) -> list[Any]:
        return [spec[:3] for spec in specs]

    assert shape(_bodies.CLIENT_MESSAGES) == shape(_messages.CLIENT_MESSAGES)
    assert shape(_bodies.SERVER_MESSAGES) == shape(_messages.SERVER_MESSAGES)


# -- the handshake, against the custom protocol ------------------------------------------------
def test_a_custom_hello_is_refused_in_words_a_custom_client_reads() -> None:
    server = Connection(Role.SERVER)
    server.receive_data(CUSTOM_HELLO_BYTES)
    with pytest.raises(ProtocolError) as info:
        server.next_event()
    assert info.value.code is ErrorCode.BAD_HANDSHAKE
    assert "protobuf-tcp" in info.value.message and "custom" in info.value.message
    refusal = server.send(Error(0, info.value.code, info.value.message))
    assert server.phase is Phase.CLOSED
    custom_client = custom.Connection(custom.Role.CLIENT)
    custom_client.send(custom.Hello())
    assert feed(custom_client, refusal) == [Error(0, ErrorCode.BAD_HANDSHAKE, info.value.message)]


def test_a_custom_server_refuses_our_hello_in_words_we_read() -> None:
    custom_server = custom.Connection(custom.Role.SERVER)
    custom_server.receive_data(HELLO_BYTES)
    with pytest.raises(ProtocolError) as info:
        custom_server.next_event()
    assert info.value.code is ErrorCode.BAD_HANDSHAKE
    refusal = custom_server.send(Error(0, info.value.code, info.value.message))
    client = Connection(Role.CLIENT)
    client.send(Hello())
    (error,) = feed(client, refusal)
    assert error == Error(0, ErrorCode.BAD_HANDSHAKE, info.value.message)
    assert client.phase is Phase.CLOSED


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes.fromhex("06 01 00 57 50 05 06"), ErrorCode.UNSUPPORTED_VERSION),  # 5..6
        (bytes.fromhex("06 01 00 48 49 01 01"), ErrorCode.BAD_HANDSHAKE),  # magic "HI"
        (bytes.fromhex("06 01 01 57 50 01 01"), ErrorCode.BAD_HANDSHAKE),  # request id 1
        (bytes.fromhex("06 01 00 57 50 02 01"), ErrorCode.BAD_HANDSHAKE),  # versions 2..1
        (bytes.fromhex("04 01 00 57 50"), ErrorCode.MALFORMED),  # no versions
        (bytes.fromhex("07 01 00 57 50 01 01 00"), ErrorCode.MALFORMED),  # a byte too many
        (bytes.fromhex("02 04 01"), ErrorCode.BAD_HANDSHAKE),  # LOGOUT before HELLO
        (bytes.fromhex("02 55 00"), ErrorCode.BAD_HANDSHAKE),  # garbage before HELLO
    ],
)
@pytest.mark.parametrize("bytewise", [False, True])
def test_refused_handshakes(data: bytes, code: ErrorCode, bytewise: bool) -> None:
    server = Connection(Role.SERVER)
    with pytest.raises(ProtocolError) as info:
        feed(server, data, bytewise=bytewise)
    assert info.value.code is code
    refusal = server.send(Error(0, code, info.value.message))
    # Before WELCOME the ERROR is the custom layout: code byte, then the text.
    assert refusal[1:4] == bytes([0xFF, 0x00, code])
    client = Connection(Role.CLIENT)
    client.send(Hello())
    assert feed(client, refusal) == [Error(0, code, info.value.message)]


def test_errors_after_welcome_are_protobuf() -> None:
    server = server_after_hello()
    with pytest.raises(ProtocolError) as info:
        feed(server, frame(0x42, 1, b""))
    assert info.value.code is ErrorCode.UNKNOWN_OPCODE
    data = server.send(Error(0, info.value.code, "unknown opcode 0x42"))
    assert data[1:5] == bytes([0xFF, 0x00, 0x08, ErrorCode.UNKNOWN_OPCODE])  # field 1, varint
    assert feed(client_after_welcome(), data) == [Error(0, info.value.code, "unknown opcode 0x42")]
    with pytest.raises(LocalProtocolError):  # after a protocol error, only ERROR may be sent
        server.send(Pong(1, b""))


def test_welcome_outside_the_offer_is_refused() -> None:
    client = Connection(Role.CLIENT)
    client.send(Hello())
    with pytest.raises(ProtocolError) as info:
        feed(client, frame(0x81, 0, bytes.fromhex("08 02")))
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION


def test_requests_pipelined_behind_hello() -> None:
    server = Connection(Role.SERVER)
    login = bytes.fromhex(C2S[1][1])
    assert feed(server, HELLO_BYTES + login) == [Hello(1, 1), C2S[1][0]]


# -- malformed bodies: (opcode, request id, body, the code a server answers) -------------------
MALFORMED = ErrorCode.MALFORMED
INVALID_UTF8 = ErrorCode.INVALID_UTF8
BAD_BODIES = [
    (0x06, 1, "0a 05 626f62", MALFORMED),  # a string runs past the end of the frame
    (0x06, 1, "05", MALFORMED),  # field number 0
    (0x06, 1, "0a", MALFORMED),  # a tag and no length
    (0x06, 1, "0b 00", MALFORMED),  # wire type 3 (a group start) with no end
    (0x06, 1, "08 ffffffffffffffffffff01", MALFORMED),  # a varint over 64 bits
    (0x06, 1, "0f 00000000", MALFORMED),  # wire type 7 does not exist
    (0x06, 1, "12 02 6869", MALFORMED),  # no recipient
    (0x06, 0, "0a 03 626f62 12 02 6869", MALFORMED),  # request id 0
    (0x06, 1, "0a 02 c328 12 02 6869", INVALID_UTF8),  # a recipient
    (0x06, 1, "0a 03 626f62 12 03 eda080", INVALID_UTF8),  # the body: a surrogate (U+D800)
    (0x06, 1, "0a 03 626f62 12 02 c0af", INVALID_UTF8),  # the body: an overlong "/"
    (0x02, 1, "0a 02 c328 12 02 7077", INVALID_UTF8),  # SIGNUP username
    (0x03, 1, "0a 03 626f62 12 01 ff", INVALID_UTF8),  # LOGIN password
    (0x05, 1, "0a 01 80", INVALID_UTF8),  # LIST_ACCOUNTS pattern
    (0x08, 1, "0a 01 fe", INVALID_UTF8),  # DELETE_ACCOUNT username
    (0x07, 0, "", MALFORMED),  # ACK with no id
    (0x07, 0, "0a 02 0605", MALFORMED),  # ACK ids out of order
    (0x07, 0, "0a 02 0505", MALFORMED),  # ACK id twice
    (0x07, 1, "0a 01 05", MALFORMED),  # ACK with a request id
    (0x07, 0, "0a 02 05", MALFORMED),  # a packed list cut short
    (0x04, 1, "0a 05 01", MALFORMED),  # LOGOUT's empty message, followed by garbage
    (0x09, 0, "", MALFORMED),  # PING with request id 0
]


@pytest.mark.parametrize(("opcode", "rid", "body", "code"), BAD_BODIES)
@pytest.mark.parametrize("bytewise", [False, True])
def test_malformed_bodies_are_refused(
    opcode: int, rid: int, body: str, code: ErrorCode, bytewise: bool
) -> None:
    server = server_after_hello()
    with pytest.raises(ProtocolError) as info:
        feed(server, frame(opcode, rid, bytes.fromhex(body)), bytewise=bytewise)
    assert info.value.code is code, info.value
    with pytest.raises(ProtocolError):  # sticky: the stream cannot be trusted any more
        server.next_event()


def test_too_many_recipients_and_acks_are_malformed() -> None:
    from transports.grpc._generated import chat_pb2

    names = [f"u{i}" for i in range(MAX_RECIPIENTS + 1)]
    for body in (
        chat_pb2.SendRequest(recipients=names, body="x").SerializeToString(),
        chat_pb2.AckRequest(message_ids=range(1, 1026)).SerializeToString(),
    ):
        server = server_after_hello()
        opcode, rid = (0x06, 1) if body[0] == 0x0A and body[2:3] == b"u" else (0x07, 0)
        with pytest.raises(ProtocolError) as info:
            feed(server, frame(opcode, rid, body))
        assert info.value.code is MALFORMED


@pytest.mark.parametrize(
    ("opcode", "rid", "body", "code"),
    [
        (0xFF, 1, "12 02 6e6f", MALFORMED),  # ERROR without a code (0 is reserved)
        (0xFF, 1, "08 80 02", MALFORMED),  # code 256
        (0xFF, 1, "08 13 12 01 ff", INVALID_UTF8),
        (0xA0, 1, "08 01", MALFORMED),  # DELIVER with a request id
        (0xA0, 0, "1a 02 c328", INVALID_UTF8),  # DELIVER sender
        (0x86, 0, "", MALFORMED),  # SENT with request id 0
        (0x86, 1, "1a 01 ff", INVALID_UTF8),  # SENT unknown_recipients
        (0x85, 1, "0a 01 ff", INVALID_UTF8),  # ACCOUNTS usernames
        (0x85, 1, "0a 09 ff", MALFORMED),
        (0x81, 0, "08 01", ErrorCode.BAD_HANDSHAKE),  # a second WELCOME
        (0x05, 1, "", ErrorCode.UNKNOWN_OPCODE),  # a client opcode, from the server
    ],
)
def test_malformed_server_bodies_are_refused(opcode: int, rid: int, body: str, code: int) -> None:
    client = client_after_welcome()
    with pytest.raises(ProtocolError) as info:
        feed(client, frame(opcode, rid, bytes.fromhex(body)))
    assert info.value.code is code, info.value


def test_unknown_fields_and_wire_types_are_skipped() -> None:
    """As protobuf does everywhere: an unknown field, a known field of the wrong wire type and
    a repeated singular field (the last wins) are not errors."""
    extra = "0a 03 626f62 7a 02 6869 10 05 12 01 78 12 02 6869 f8 ff 03 07"
    events = feed(server_after_hello(), frame(0x06, 1, bytes.fromhex(extra)))
    assert events == [Send(1, ("bob",), "hi")]
    unpacked = "08 05 0a 02 06 07"  # an id outside the packed list, then a packed list
    assert feed(server_after_hello(), frame(0x07, 0, bytes.fromhex(unpacked))) == [Ack((5, 6, 7))]


def test_framing_errors_are_the_custom_protocols() -> None:
    server = server_after_hello()
    with pytest.raises(ProtocolError) as info:
        feed(server, bytes.fromhex("80 80 07"))  # 114688 > max_frame, refused at once
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE
    server = server_after_hello()
    with pytest.raises(ProtocolError) as info:
        feed(server, bytes.fromhex("86 00 06 01"))  # a length varint that is not minimal
    assert info.value.code is MALFORMED
    server = server_after_hello()
    with pytest.raises(ProtocolError) as info:
        feed(server, bytes.fromhex("02 81 00"))  # WELCOME, from a client
    assert info.value.code is ErrorCode.UNKNOWN_OPCODE
    server = server_after_hello()
    with pytest.raises(ProtocolError) as info:
        feed(server, HELLO_BYTES)  # a second HELLO
    assert info.value.code is ErrorCode.BAD_HANDSHAKE


# -- what cannot be sent -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "code"),
    [
        (Send(1, (), "x"), MALFORMED),
        (Send(1, tuple(f"u{i}" for i in range(257)), "x"), MALFORMED),
        (Send(1, ("bob",), "\ud800"), INVALID_UTF8),
        (Send(0, ("bob",), "x"), MALFORMED),
        (Send(2**32, ("bob",), "x"), MALFORMED),
        (ListAccounts(1, "*", "", 2**32), MALFORMED),
        (Ack(()), MALFORMED),
        (Ack((6, 5)), MALFORMED),
        (Ack((-1,)), MALFORMED),
        (Ack((2**64,)), MALFORMED),
        (Hello(2, 1), MALFORMED),
        (Welcome(1, 1, 1, 1), ErrorCode.UNKNOWN_OPCODE),  # a server message
        (Send(1, ("bob",), "x" * (MAX_FRAME)), ErrorCode.FRAME_TOO_LARGE),
    ],
)
def test_client_cannot_send(event: Any, code: ErrorCode) -> None:
    conn = client_after_welcome() if not isinstance(event, Hello) else Connection(Role.CLIENT)
    with pytest.raises(LocalProtocolError) as info:
        conn.send(event)
    assert info.value.code is code


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (Error(1, 0, "x"), MALFORMED),
        (Error(1, 256, "x"), MALFORMED),
        (Error(-1, ErrorCode.INTERNAL, "x"), MALFORMED),
        (Deliver(-1, 0, "a", "b"), MALFORMED),
        (Deliver(1, 2**64, "a", "b"), MALFORMED),
        (Sent(1, 1, 1, ("\udcff",)), INVALID_UTF8),
        (SignedUp(0, 0), MALFORMED),
    ],
)
def test_server_cannot_send(event: Any, code: ErrorCode) -> None:
    with pytest.raises(LocalProtocolError) as info:
        server_after_hello().send(event)
    assert info.value.code is code


def test_nothing_but_hello_before_the_handshake() -> None:
    with pytest.raises(LocalProtocolError) as info:
        Connection(Role.CLIENT).send(Logout(1))
    assert info.value.code is ErrorCode.BAD_HANDSHAKE


# -- the byte cost, against the custom codec (PROTOCOL.md section 6) --------------------------
def _custom_pair() -> tuple[custom.Connection, custom.Connection]:
    client, server = custom.Connection(custom.Role.CLIENT), custom.Connection(custom.Role.SERVER)
    server.receive_data(client.send(custom.Hello()))
    server.next_event()
    client.receive_data(server.send(WELCOME))
    client.next_event()
    return client, server


def steady_send_bytes(body: str, recipient: str, message_id: int) -> dict[str, dict[str, int]]:
    """Bytes of SEND, SENT, DELIVER and ACK on each codec, for one steady chat message."""
    sizes: dict[str, dict[str, int]] = {}
    for name, (client, server) in {
        "custom": _custom_pair(),
        "protobuf-tcp": (client_after_welcome(), server_after_hello()),
    }.items():
        sent_at = 1767225600000  # a current timestamp: 6 bytes as a varint
        sizes[name] = {
            "SEND": len(client.send(Send(1, (recipient,), body))),
            "SENT": len(server.send(Sent(1, message_id, sent_at, ()))),
            "DELIVER": len(server.send(Deliver(message_id, sent_at, "alice_123456", body))),
            "ACK": len(client.send(Ack((message_id,)))),
        }
    return sizes


def test_steady_send_costs_what_the_doc_says() -> None:
    sizes = steady_send_bytes("b" * 32, "r" * 12, 1000)
    assert sizes["custom"] == {"SEND": 49, "SENT": 12, "DELIVER": 56, "ACK": 6}
    assert sizes["protobuf-tcp"] == {"SEND": 51, "SENT": 13, "DELIVER": 61, "ACK": 7}
