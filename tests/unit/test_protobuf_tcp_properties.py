"""Property tests of the protobuf-tcp codec: every event of versions 1 and 2 round-trips (whole
and split at any point), and garbage bodies or streams only ever yield events or a
ProtocolError."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.types import Conversation, Delivery
from transports.custom._events import (
    NEED_DATA,
    Accounts,
    Ack,
    ConnectionClosed,
    Conversations,
    DeleteAccount,
    Deleted,
    DeleteMessages,
    Deliver,
    Error,
    Hello,
    History,
    ListAccounts,
    ListConversations,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    MarkedRead,
    MarkRead,
    MessagesGone,
    Ping,
    Pong,
    ReadHistory,
    ReadMark,
    Removed,
    Send,
    Sent,
    SentCopy,
    SignedUp,
    Signup,
    Welcome,
)
from transports.custom._wire import (
    MAX_BODY,
    MAX_DELETE_IDS,
    MAX_FRAME,
    ErrorCode,
    ProtocolError,
    closes,
    put_varint,
)
from transports.protobuf_tcp._codec import Connection, Role

HELLO_BYTES = {1: bytes.fromhex("06 01 00 57 50 01 01"), 2: bytes.fromhex("06 01 00 57 50 01 02")}


def server(version: int = 1) -> Connection:
    conn = Connection(Role.SERVER)
    conn.receive_data(HELLO_BYTES[version])
    conn.next_event()
    conn.send(Welcome(version, MAX_FRAME, MAX_BODY, 256))
    return conn


def client(version: int = 1) -> Connection:
    conn = Connection(Role.CLIENT)
    conn.send(Hello(1, version))
    conn.receive_data(_welcome_bytes(version))
    conn.next_event()
    return conn


def _welcome_bytes(version: int) -> bytes:
    conn = Connection(Role.SERVER)
    conn.receive_data(HELLO_BYTES[version])
    conn.next_event()
    return conn.send(Welcome(version, MAX_FRAME, MAX_BODY, 256))


def decode_all(conn: Connection, *chunks: bytes, eof: bool = False) -> list[object]:
    """Feed the non-empty chunks, then the end of the stream if ``eof``; every event."""
    events: list[object] = []
    for chunk in [c for c in chunks if c] + ([b""] if eof else []):
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
            if isinstance(event, ConnectionClosed):
                return events
    return events


# -- strategies: every field over its whole wire range ---------------------------------------
text = st.text(st.characters(codec="utf-8"), max_size=40)  # no lone surrogates
names = st.lists(text, max_size=6).map(tuple)
recipients = st.lists(text, min_size=1, max_size=6).map(tuple)
rid = st.integers(1, 2**32 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
ack_ids = st.sets(u64, min_size=1, max_size=40).map(lambda ids: tuple(sorted(ids)))
body = st.one_of(text, st.text(st.characters(codec="utf-8"), max_size=3000))
any_code = st.one_of(st.sampled_from(list(ErrorCode)), st.integers(1, 255))

client_events = st.one_of(
    st.builds(Signup, rid, text, text),
    st.builds(Login, rid, text, text),
    st.builds(Logout, rid),
    st.builds(ListAccounts, rid, text, text, u32),
    st.builds(Send, rid, recipients, body),
    st.builds(Ack, ack_ids),
    st.builds(DeleteAccount, rid, text),
    st.builds(Ping, rid, st.binary(max_size=64)),
)
server_events = st.one_of(
    st.builds(SignedUp, rid, u64),
    st.builds(LoggedIn, rid, u64),
    st.builds(LoggedOut, rid),
    st.builds(Accounts, rid, names, st.booleans()),
    st.builds(Sent, rid, u64, u64, names),
    st.builds(Deleted, rid),
    st.builds(Pong, rid, st.binary(max_size=64)),
    st.builds(Deliver, u64, u64, text, body),
    st.builds(Error, st.integers(0, 2**32 - 1), any_code, text),
)


# version 2: history, read marks, deletion, and the pushes
delete_ids = st.sets(u64, min_size=1, max_size=MAX_DELETE_IDS).map(lambda ids: tuple(sorted(ids)))
sorted_names = st.lists(text, max_size=4, unique=True).map(lambda xs: tuple(sorted(xs)))
v2_deliver = st.builds(Deliver, u64, u64, text, body, sorted_names, st.booleans(), u64)


@st.composite
def history_pages(draw: st.DrawFn) -> History:
    """A page as a server sends it: ids decreasing, each message of the page's conversation
    (a message whose conversation_id is 0 takes the page's participants: chat.proto)."""
    conversation_id = draw(u64)
    participants = draw(sorted_names)
    ids = sorted(draw(st.sets(st.integers(1, 2**64 - 1), max_size=8)), reverse=True)
    messages = tuple(
        Delivery(
            i, draw(text), draw(body), draw(u64), participants, draw(st.booleans()), conversation_id
        )
        for i in ids
    )
    deleted = (
        draw(st.lists(st.sampled_from(participants), unique=True).map(tuple))
        if participants
        else ()
    )
    return History(
        draw(rid), conversation_id, participants, messages, draw(st.booleans()), deleted, draw(u64)
    )


@st.composite
def conversation_pages(draw: st.DrawFn) -> Conversations:
    found = []
    for _ in range(draw(st.integers(0, 4))):
        conversation_id, participants = draw(st.integers(1, 2**64 - 1)), draw(sorted_names)
        last = Delivery(
            draw(u64), draw(text), draw(body), draw(u64), participants, draw(st.booleans()),
            conversation_id,
        )  # fmt: skip
        found.append(Conversation(conversation_id, participants, last, draw(u64), draw(u64), ()))
    return Conversations(draw(rid), tuple(found), draw(st.booleans()))


client_events_v2 = st.one_of(
    client_events,
    st.builds(ListConversations, rid, u64, u32),
    st.builds(ReadHistory, rid, u64, u64, u32, names),
    st.builds(MarkRead, rid, u64, u64),
    st.builds(DeleteMessages, rid, delete_ids, st.booleans()),
)
server_events_v2 = st.one_of(
    server_events.filter(lambda e: not isinstance(e, Sent | Deliver)),
    st.builds(Sent, rid, u64, u64, names, u64),
    v2_deliver,
    history_pages(),
    conversation_pages(),
    st.builds(MarkedRead, rid, u64, u64, u64),
    st.builds(Removed, rid),
    st.builds(SentCopy, v2_deliver),
    st.builds(ReadMark, u64, u64, u64),
    st.builds(MessagesGone, delete_ids),
)


def _normal(event: Any) -> Any:
    """Codes of this version come back as ErrorCode members."""
    if isinstance(event, Error) and event.code in ErrorCode._value2member_map_:
        return Error(event.request_id, ErrorCode(event.code), event.message)
    return event


@settings(max_examples=300, deadline=None)
@given(st.lists(client_events, min_size=1, max_size=5), st.data())
def test_client_events_round_trip(events: list[Any], data: st.DataObject) -> None:
    sender = client()
    wire = b"".join(sender.send(event) for event in events)
    cut = data.draw(st.integers(0, len(wire)))
    assert decode_all(server(), wire[:cut], wire[cut:]) == events


@settings(max_examples=300, deadline=None)
@given(st.lists(server_events, min_size=1, max_size=5), st.data())
def test_server_events_round_trip(events: list[Any], data: st.DataObject) -> None:
    closing = [i for i, e in enumerate(events) if isinstance(e, Error) and closes(e.code)]
    events = events[: closing[0] + 1] if closing else events  # nothing follows such an ERROR
    sender = server()
    wire = b"".join(sender.send(event) for event in events)
    cut = data.draw(st.integers(0, len(wire)))
    assert decode_all(client(), wire[:cut], wire[cut:]) == [_normal(e) for e in events]


@settings(max_examples=300, deadline=None)
@given(st.lists(client_events_v2, min_size=1, max_size=5), st.data())
def test_version_2_client_events_round_trip(events: list[Any], data: st.DataObject) -> None:
    wire = b"".join(client(2).send(event) for event in events)
    cut = data.draw(st.integers(0, len(wire)))
    assert decode_all(server(2), wire[:cut], wire[cut:]) == events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(server_events_v2, min_size=1, max_size=5), st.data())
def test_version_2_server_events_round_trip(events: list[Any], data: st.DataObject) -> None:
    closing = [i for i, e in enumerate(events) if isinstance(e, Error) and closes(e.code)]
    events = events[: closing[0] + 1] if closing else events
    sender = server(2)
    wire = b"".join(sender.send(event) for event in events)
    cut = data.draw(st.integers(0, len(wire)))
    assert decode_all(client(2), wire[:cut], wire[cut:]) == [_normal(e) for e in events]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 255), st.integers(1, 255), st.data())
def test_hello_round_trips(low: int, spread: int, data: st.DataObject) -> None:
    high = min(255, low + spread - 1)
    wire = Connection(Role.CLIENT).send(Hello(low, high))
    conn = Connection(Role.SERVER)
    try:
        events = decode_all(conn, wire)
    except ProtocolError as exc:  # no version in common with a server speaking 1 and 2
        assert exc.code is ErrorCode.UNSUPPORTED_VERSION and low > 2
    else:
        assert events == [Hello(low, high)]


def _frame(opcode: int, request_id: int, payload: bytes) -> bytes:
    inner = bytearray([opcode])
    put_varint(inner, request_id)
    inner += payload
    out = bytearray()
    put_varint(out, len(inner))
    return bytes(out + inner)


CLIENT_OPCODES = list(range(0x02, 0x0E))  # (a version 2 connection's)
SERVER_OPCODES = [0x82, 0x83, 0x84, 0x85, 0x86, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8D, 0xA0, 0xA1]
SERVER_OPCODES += [0xA2, 0xA3, 0xFF]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CLIENT_OPCODES), st.integers(0, 3), st.binary(max_size=60))
def test_garbage_request_bodies_give_events_or_protocol_errors(
    opcode: int, request_id: int, payload: bytes
) -> None:
    try:
        decode_all(server(2), _frame(opcode, request_id, payload))
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.MALFORMED, ErrorCode.INVALID_UTF8)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SERVER_OPCODES), st.integers(0, 3), st.binary(max_size=60))
def test_garbage_reply_bodies_give_events_or_protocol_errors(
    opcode: int, request_id: int, payload: bytes
) -> None:
    try:
        decode_all(client(2), _frame(opcode, request_id, payload))
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.MALFORMED, ErrorCode.INVALID_UTF8)


# Protobuf-shaped garbage: real tags and lengths with random contents, which reaches deeper
# into the parser than random bytes do.
_field = st.tuples(st.integers(0, 20), st.sampled_from([0, 1, 2, 5]), st.binary(max_size=12))


def _protobufish(fields: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray()
    for number, wire_type, value in fields:
        put_varint(out, number << 3 | wire_type)
        if wire_type == 0:
            put_varint(out, int.from_bytes(value[:9], "little"))
        elif wire_type == 2:
            put_varint(out, len(value))
            out += value
        else:
            out += value[: 8 if wire_type == 1 else 4].ljust(8 if wire_type == 1 else 4, b"\0")
    return bytes(out)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CLIENT_OPCODES + SERVER_OPCODES), st.lists(_field, max_size=6))
def test_protobuf_shaped_garbage(opcode: int, fields: list[tuple[int, int, bytes]]) -> None:
    conn = server(2) if opcode < 0x80 else client(2)
    request_id = 0 if opcode in (0x07, 0xA0, 0xA1, 0xA2, 0xA3) else 1
    try:
        decode_all(conn, _frame(opcode, request_id, _protobufish(fields)))
    except ProtocolError as exc:
        assert exc.code in (ErrorCode.MALFORMED, ErrorCode.INVALID_UTF8)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_a_garbage_stream_never_escapes_as_another_exception(data: bytes) -> None:
    for conn in (Connection(Role.SERVER), server(), client(), server(2), client(2)):
        try:
            decode_all(conn, data, eof=True)
        except ProtocolError:
            pass
