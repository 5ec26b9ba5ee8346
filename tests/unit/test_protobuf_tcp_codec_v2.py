"""The protobuf-tcp codec's version 2 with plain bytes: the history, read-mark and deletion
messages and their pushes (chat.proto's messages as bodies), the version switch, and version 1
connections left exactly as they were.

Every vector is fed whole, one byte at a time, and followed by the first bytes of the next
frame, and re-encodes to the same bytes.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.types import Conversation, Delivery
from transports.custom import _messages
from transports.custom._codec import Connection as CustomConnection
from transports.custom._events import (
    NEED_DATA,
    Conversations,
    DeleteMessages,
    Deliver,
    Hello,
    History,
    ListConversations,
    MarkedRead,
    MarkRead,
    MessagesGone,
    ReadHistory,
    ReadMark,
    Removed,
    Sent,
    SentCopy,
    Welcome,
)
from transports.custom._wire import (
    MAX_BODY,
    MAX_DELETE_IDS,
    MAX_FRAME,
    MAX_RECIPIENTS,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    put_varint,
)
from transports.grpc._generated import chat_pb2 as chat
from transports.protobuf_tcp import _bodies_v2
from transports.protobuf_tcp._codec import Connection, Role

T0 = 1767225600000  # 2026-01-01T00:00:00Z


def pair(offer: tuple[int, int] = (1, 2)) -> tuple[Connection, Connection]:
    """A (client, server) pair after the handshake on the offered versions."""
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    server.receive_data(client.send(Hello(*offer)))
    server.next_event()
    assert server.version is not None
    welcome = Welcome(server.version, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)
    client.receive_data(server.send(welcome))
    assert client.next_event() == welcome
    return client, server


def feed(conn: Connection, data: bytes, *, bytewise: bool = False) -> list[object]:
    events: list[object] = []
    for chunk in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
    return events


def frame(opcode: int, rid: int, body: bytes) -> bytes:
    inner = bytearray([opcode])
    put_varint(inner, rid)
    inner += body
    out = bytearray()
    put_varint(out, len(inner))
    return bytes(out + inner)


YO = Delivery(1001, "bob", "yo", T0 + 1000, ("bob",), False, 7)
HI = Delivery(1000, "alice", "hi", T0, ("bob",), False, 7)

# -- vectors: (event, the frame's bytes) --------------------------------------------------------
C2S = [
    (ListConversations(5), "02 0a 05"),
    (ListConversations(6, 1001, 20), "07 0a 06 08 e907 10 14"),
    (ReadHistory(2, 0, 0, 50, ("bob",)), "09 0b 02 0a 03 626f62 18 32"),
    (ReadHistory(7, 7, 1001, 0, ()), "07 0b 07 10 e907 20 07"),
    (MarkRead(3, 7, 999), "07 0c 03 08 07 10 e707"),
    (DeleteMessages(4, (1000, 1001), True), "0a 0d 04 0a 04 e807 e907 10 01"),
    (DeleteMessages(4, (5,), False), "05 0d 04 0a 01 05"),
]
S2C = [
    (Sent(1, 1000, T0, (), 7), "0e 86 01 08 e807 10 80d0eab6b733 20 07"),
    (
        Deliver(1000, T0, "alice", "hi bob", ("alice",), False, 7),
        "24 a0 00 08 e807 10 80d0eab6b733 1a 05 616c696365 22 06 686920626f62"
        " 2a 05 616c696365 38 07",
    ),
    (
        Deliver(1002, T0, "carol", "x", ("bob", "carol"), True, 8),
        "26 a0 00 08 ea07 10 80d0eab6b733 1a 05 6361726f6c 22 01 78 2a 03 626f62"
        " 2a 05 6361726f6c 30 01 38 08",
    ),
    (
        # the page's messages leave out the conversation and participants (the page's)
        History(2, 7, ("bob",), (YO, HI), False, (), 1000),
        "38 8b 02 08 07 12 03 626f62 1a 13 08 e907 10 e8d7eab6b733 1a 03 626f62 22 02 796f"
        " 1a 15 08 e807 10 80d0eab6b733 1a 05 616c696365 22 02 6869 30 e807",
    ),
    (History(3, 0, ("nobody",), (), False, (), 0), "0a 8b 03 12 06 6e6f626f6479"),
    (
        History(
            4, 9, ("bob",), (Delivery(5, "bob", "old", T0, ("bob",), True, 9),), True, ("bob",)
        ),
        "27 8b 04 08 09 12 03 626f62 1a 15 08 05 10 80d0eab6b733 1a 03 626f62 22 03 6f6c64 30 01"
        " 20 01 2a 03 626f62",
    ),
    (
        Conversations(5, (Conversation(7, ("bob",), YO, 1, 1000, ()),), True),
        "27 8a 05 0a 21 08 07 12 03 626f62 1a 13 08 e907 10 e8d7eab6b733 1a 03 626f62 22 02 796f"
        " 20 01 28 e807 10 01",
    ),
    (Conversations(6, (), False), "02 8a 06"),
    (MarkedRead(3, 7, 999, 1), "09 8c 03 08 07 10 e707 18 01"),
    (Removed(4), "02 8d 04"),
    (
        SentCopy(Deliver(1000, T0, "alice", "hi bob", ("bob",), False, 7)),
        "22 a1 00 08 e807 10 80d0eab6b733 1a 05 616c696365 22 06 686920626f62 2a 03 626f62 38 07",
    ),
    (ReadMark(7, 1000, 0), "07 a2 00 08 07 10 e807"),
    (MessagesGone((1000, 1001)), "08 a3 00 0a 04 e807 e907"),
]


@pytest.mark.parametrize(("event", "hexdata"), C2S, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("bytewise", [False, True])
def test_client_vector(event: Any, hexdata: str, bytewise: bool) -> None:
    data = bytes.fromhex(hexdata)
    client, server = pair()
    assert client.send(event) == data
    assert feed(server, data + b"\x05\x06", bytewise=bytewise) == [event]
    assert server.buffered == 2  # the start of the next frame waits


@pytest.mark.parametrize(("event", "hexdata"), S2C, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("bytewise", [False, True])
def test_server_vector(event: Any, hexdata: str, bytewise: bool) -> None:
    data = bytes.fromhex(hexdata)
    client, server = pair()
    assert server.send(event) == data
    assert feed(client, data + b"\x05\x86", bytewise=bytewise) == [event]
    assert client.buffered == 2


def test_bodies_are_the_chat_proto_messages() -> None:
    """HISTORY is a ReadHistoryReply a gRPC client reads, its messages' gaps filled in."""
    _, server = pair()
    data = server.send(History(2, 7, ("bob",), (YO, HI), False, (), 1000))
    reply = chat.ReadHistoryReply.FromString(data[3:])
    assert [m.conversation_id for m in reply.messages] == [0, 0]  # the page's
    assert [m.sender for m in reply.messages] == ["bob", "alice"]
    assert reply.read_up_to == 1000


def test_a_message_of_another_conversation_keeps_its_own() -> None:
    other = Delivery(999, "bob", "elsewhere", T0, ("bob", "carol"), False, 8)
    page = History(2, 7, ("bob",), (YO, other), False)
    client, server = pair()
    assert feed(client, server.send(page)) == [page]


# -- the version switch ------------------------------------------------------------------------
def test_both_sides_speak_version_2_when_offered() -> None:
    client, server = pair()
    assert client.versions == server.versions == (1, 2, 3, 4)
    assert client.version == server.version == 2
    # the custom positional tables never take over: DELIVER is protobuf on version 2
    deliver = Deliver(1000, T0, "alice", "hi", ("alice",), False, 7)
    data = server.send(deliver)
    assert chat.Delivery.FromString(data[3:]).conversation_id == 7
    assert feed(client, data) == [deliver]


def test_a_version_1_connection_is_unchanged() -> None:
    client, server = pair((1, 1))
    assert client.version == server.version == 1
    # DELIVER and SENT send only their version 1 fields: the first edition's bytes
    deliver = server.send(Deliver(1000, T0, "alice", "héllo 👋", ("alice",), True, 7))
    assert deliver == bytes.fromhex(
        "20 a0 00 08 e807 10 80d0eab6b733 1a 05 616c696365 22 0b 68c3a96c6c6f20f09f918b"
    )
    assert server.send(Sent(1, 1000, T0, (), 7)) == bytes.fromhex(
        "0c 86 01 08 e807 10 80d0eab6b733"
    )
    # and version 2 messages are not part of it, either way
    with pytest.raises(LocalProtocolError) as refused:
        client.send(MarkRead(3, 7, 999))
    assert refused.value.code is ErrorCode.UNKNOWN_OPCODE
    with pytest.raises(LocalProtocolError):
        server.send(ReadMark(7, 1000, 0))
    with pytest.raises(ProtocolError) as error:
        feed(server, bytes.fromhex("07 0c 03 08 07 10 e707"))
    assert error.value.code is ErrorCode.UNKNOWN_OPCODE


def test_a_custom_protocol_client_offering_1_to_2_is_refused_still() -> None:
    hello = CustomConnection(Role.CLIENT).send(Hello(1, 2))
    server = Connection(Role.SERVER)
    with pytest.raises(ProtocolError) as refused:
        feed(server, hello)
    assert refused.value.code is ErrorCode.BAD_HANDSHAKE


def test_errors_stay_protobuf_after_the_switch() -> None:
    from transports.custom._events import Error

    client, server = pair()
    data = server.send(Error(3, ErrorCode.FORBIDDEN, "not yours"))
    assert feed(client, data) == [Error(3, ErrorCode.FORBIDDEN, "not yours")]


def test_tables_have_the_custom_opcodes_and_kinds() -> None:
    """The custom handshake tables of version 2 apply only if every opcode has the same kind."""

    def shape(specs: Any) -> list[Any]:
        return [spec[:3] for spec in specs]

    assert shape(_bodies_v2.CLIENT_MESSAGES_V2) == shape(_messages.CLIENT_MESSAGES_V2)
    assert shape(_bodies_v2.SERVER_MESSAGES_V2) == shape(_messages.SERVER_MESSAGES_V2)


# -- what is refused ---------------------------------------------------------------------------
_IDS = bytes.fromhex("0a 04 e907 e807")  # ids 1001, 1000: not increasing


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x0D, 1, b""), ErrorCode.MALFORMED),  # no ids
        (frame(0x0D, 1, _IDS), ErrorCode.MALFORMED),
        (frame(0x0D, 1, b"\x0a\x02\x05\x05"), ErrorCode.MALFORMED),  # a repeated id
        (frame(0x0D, 1, b"\x0a\x82\x08" + b"\x01" * 1025), ErrorCode.MALFORMED),  # 1025 ids
        (frame(0x0C, 0, b"\x08\x07"), ErrorCode.MALFORMED),  # request id 0 on a request
        (frame(0x0B, 1, b"\x0a\x02\xc3\x28"), ErrorCode.INVALID_UTF8),  # a participant
        (frame(0x0A, 1, b"\x08"), ErrorCode.MALFORMED),  # a truncated varint
    ],
)
@pytest.mark.parametrize("bytewise", [False, True])
def test_malformed_requests(data: bytes, code: ErrorCode, bytewise: bool) -> None:
    _, server = pair()
    with pytest.raises(ProtocolError) as refused:
        feed(server, data, bytewise=bytewise)
    assert refused.value.code is code


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0xA3, 0, _IDS), ErrorCode.MALFORMED),
        (frame(0xA3, 0, b""), ErrorCode.MALFORMED),
        (frame(0xA2, 1, b"\x08\x07"), ErrorCode.MALFORMED),  # a push with a request id
        (frame(0xA1, 1, b""), ErrorCode.MALFORMED),
        (frame(0x8C, 0, b"\x08\x07"), ErrorCode.MALFORMED),  # a reply to request id 0
        (frame(0x8B, 1, b"\x12\x02\xc3\x28"), ErrorCode.INVALID_UTF8),
    ],
)
def test_malformed_server_frames(data: bytes, code: ErrorCode) -> None:
    client, _ = pair()
    with pytest.raises(ProtocolError) as refused:
        feed(client, data)
    assert refused.value.code is code


@pytest.mark.parametrize(
    "event",
    [
        DeleteMessages(1, ()),
        DeleteMessages(1, (2, 1)),
        DeleteMessages(1, tuple(range(MAX_DELETE_IDS + 1))),
        DeleteMessages(1, (2**64,)),
        MarkRead(1, 2**64, 1),
        ReadHistory(0, 7),
    ],
)
def test_client_cannot_send(event: Any) -> None:
    client, _ = pair()
    with pytest.raises(LocalProtocolError):
        client.send(event)


def test_server_cannot_send_bad_id_lists() -> None:
    _, server = pair()
    for ids in ((), (2, 1), tuple(range(MAX_DELETE_IDS + 1))):
        with pytest.raises(LocalProtocolError):
            server.send(MessagesGone(ids))


def test_the_largest_delete_fits() -> None:
    ids = tuple(range(2**63, 2**63 + MAX_DELETE_IDS))
    client, server = pair()
    event = DeleteMessages(2**32 - 1, ids, True)
    assert feed(server, client.send(event)) == [event]


def test_a_page_too_large_for_a_frame_is_refused_so_the_server_cuts_it() -> None:
    messages = tuple(
        Delivery(10_000 - i, "bob", "x" * 60_000, T0, ("bob",), False, 7) for i in range(2)
    )
    _, server = pair()
    with pytest.raises(LocalProtocolError) as refused:
        server.send(History(2, 7, ("bob",), messages, False))
    assert refused.value.code is ErrorCode.FRAME_TOO_LARGE
    assert server.send(History(2, 7, ("bob",), messages[:1], True))
