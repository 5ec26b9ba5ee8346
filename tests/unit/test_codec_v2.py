"""Version 2 of the custom protocol in the sans-IO codec: negotiation, every new frame, the grown
layouts of SENT and DELIVER, what a version 1 connection refuses, and what is malformed.

Every vector is fed whole, one byte at a time, and followed by the first bytes of the next frame.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.types import Conversation, Delivery
from transports.custom import (
    Connection,
    Conversations,
    DeleteMessages,
    Deliver,
    ErrorCode,
    Hello,
    History,
    ListConversations,
    LocalProtocolError,
    MarkedRead,
    MarkRead,
    MessagesGone,
    ProtocolError,
    ReadHistory,
    ReadMark,
    Removed,
    Role,
    Sent,
    SentCopy,
    Welcome,
)
from transports.custom._events import NEED_DATA
from transports.custom._wire import MAX_DELETE_IDS, MAX_FRAME, put_varint
from transports.protobuf_tcp import Connection as ProtobufConnection

T0 = 1_767_225_600_000


def pair(versions: tuple[int, int] = (1, 2)) -> tuple[Connection, Connection]:
    """(client, server) after HELLO offering ``versions`` and the server's WELCOME."""
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    server.receive_data(client.send(Hello(*versions)))
    server.next_event()
    assert server.version is not None
    client.receive_data(server.send(Welcome(server.version, MAX_FRAME, 65536, 256)))
    client.next_event()
    assert client.version == server.version
    return client, server


def feed(conn: Connection, data: bytes, how: str) -> list[Any]:
    chunks = [data[i : i + 1] for i in range(len(data))] if how == "bytewise" else [data]
    if how == "trailing":
        chunks = [data + b"\x05\x09"]
    events = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
    if how == "trailing":
        assert conn.buffered == 2
    return events


def delivery(mid: int, sender: str, body: str, at: int, deleted: bool = False) -> Delivery:
    return Delivery(mid, sender, body, at, ("bob",), deleted, 7)


MESSAGES = (
    delivery(1002, "bob", "see you", T0 + 65_000),
    delivery(1001, "alice", "lunch? ☕", T0 + 5_000),
    delivery(1000, "bob", "hi", T0 + 9_000),  # a clock that stepped back: a positive difference
    delivery(3, "bob", "old", 5, deleted=True),  # a deleted sender of the same name: its own entry
)
CONVERSATION = Conversation(7, ("bob",), delivery(1002, "bob", "see you", T0), 1, 1001, ())
C2S = [
    ListConversations(1, 0, 20),
    ListConversations(2**32 - 1, 2**64 - 1, 2**32 - 1),
    ReadHistory(2, 0, 0, 50, ("bob", "carol")),
    ReadHistory(3, 7, 1000, 0, ()),
    MarkRead(4, 7, 1002),
    DeleteMessages(5, (1, 2, 900, 2**64 - 1), True),
    DeleteMessages(6, tuple(range(1, MAX_DELETE_IDS + 1)), False),
]
S2C = [
    Sent(1, 1000, T0, ("ghost",), 7),
    Deliver(1000, T0, "alice", "hi", ("alice",), False, 7),  # 1:1: the sender sent once
    Deliver(1003, T0, "alice", "hé", ("alice", "carol"), True, 9),
    Deliver(1004, T0, "me", "note", (), False, 3),  # a note to yourself: no participants
    Deliver(1005, T0, "me", "group", ("bob", "carol"), False, 4),  # you sent it to a group
    Conversations(1, (CONVERSATION, CONVERSATION), True),
    Conversations(1, (), False),
    History(2, 7, ("bob",), MESSAGES, True, ("bob",), 1001),
    History(2, 0, ("nobody",), (), False),
    MarkedRead(3, 7, 1002, 0),
    Removed(4),
    SentCopy(Deliver(1003, T0, "alice", "hello both", ("bob", "carol"), False, 9)),
    ReadMark(7, 1002, 5),
    MessagesGone((1000, 1001, 1005)),
]


@pytest.mark.parametrize("how", ["whole", "bytewise", "trailing"])
@pytest.mark.parametrize("event", C2S, ids=lambda e: type(e).__name__)
def test_every_new_request_round_trips(event: Any, how: str) -> None:
    client, server = pair()
    assert feed(server, client.send(event), how) == [event]


@pytest.mark.parametrize("how", ["whole", "bytewise", "trailing"])
@pytest.mark.parametrize("event", S2C, ids=lambda e: type(e).__name__)
def test_every_new_reply_and_push_round_trips(event: Any, how: str) -> None:
    client, server = pair()
    assert feed(client, server.send(event), how) == [event]


def test_a_version_2_client_gets_version_2_from_a_version_2_server() -> None:
    client, server = pair((1, 2))
    assert (client.version, server.version) == (2, 2)


def test_a_version_1_client_gets_exactly_version_1() -> None:
    client, server = pair((1, 1))
    assert server.version == 1
    # SENT and DELIVER keep their version 1 layouts: the version 2 fields stay home.
    sent = server.send(Sent(1, 1000, T0, (), 7))
    assert feed(client, sent, "whole") == [Sent(1, 1000, T0, ())]
    deliver = server.send(Deliver(1000, T0, "alice", "hi", ("alice",), True, 7))
    assert feed(client, deliver, "whole") == [Deliver(1000, T0, "alice", "hi")]
    # None of version 2's messages can be sent or received.
    for event in S2C[5:]:
        with pytest.raises(LocalProtocolError) as info:
            server.send(event)
        assert info.value.code is ErrorCode.UNKNOWN_OPCODE
    with pytest.raises(LocalProtocolError, match="not part of protocol version 1"):
        client.send(ListConversations(1))
    with pytest.raises(ProtocolError) as refused:
        feed(server, bytes.fromhex("04 0a 01 00 00"), "whole")
    assert refused.value.code is ErrorCode.UNKNOWN_OPCODE


def test_a_version_1_delivery_is_exactly_the_first_editions_bytes() -> None:
    _, server = pair((1, 1))
    data = server.send(Deliver(1000, T0, "alice", "héllo 👋", ("alice",), False, 7))
    assert data == bytes.fromhex(
        "1b a0 00 e8 07 80 d0 ea b6 b7 33 05 61 6c 69 63 65 68 c3 a9 6c 6c 6f 20 f0 9f 91 8b"
    )


def test_protobuf_tcp_speaks_version_2_too() -> None:
    client, server = ProtobufConnection(Role.CLIENT), ProtobufConnection(Role.SERVER)
    assert client.versions[:2] == (1, 2)  # (and 3, issue 13)
    custom_client = Connection(Role.CLIENT)
    hello = custom_client.send(Hello(1, 2))  # a client offering 1..2 (magic aside)
    server.receive_data(hello[:3] + b"WP" + hello[5:])
    server.next_event()
    assert server.version == 2


def frame(opcode: int, rid: int, body: bytes) -> bytes:
    inner = bytearray([opcode])
    put_varint(inner, rid)
    inner += body
    out = bytearray()
    put_varint(out, len(inner))
    return bytes(out + inner)


MALFORMED_C2S = {
    "delete: no ids": frame(0x0D, 1, b"\x01\x00"),
    "delete: too many ids": frame(0x0D, 1, b"\x00\x81\x08" + b"\x01" * 1025),
    "delete: a delta of 0": frame(0x0D, 1, b"\x00\x02\x05\x00"),
    "delete: for_everyone 2": frame(0x0D, 1, b"\x02\x01\x05"),
    "list conversations: request id 0": frame(0x0A, 0, b"\x00\x00"),
    "read history: truncated names": frame(0x0B, 1, b"\x00\x00\x00\x05\x03bob"),
    "mark read: a byte after the last field": frame(0x0C, 1, b"\x07\x07\x00"),
}


@pytest.mark.parametrize("how", ["whole", "bytewise"])
@pytest.mark.parametrize("name", list(MALFORMED_C2S))
def test_malformed_version_2_requests_are_refused(name: str, how: str) -> None:
    _, server = pair()
    with pytest.raises(ProtocolError) as info:
        feed(server, MALFORMED_C2S[name], how)
    assert info.value.code is ErrorCode.MALFORMED


MALFORMED_S2C = {
    "deliver: a reserved flag": frame(0xA0, 0, b"\x01\x01\x01\x04\x01a\x00x"),
    "deliver: request id 1": frame(0xA0, 1, b"\x01\x01\x01\x00\x01a\x00x"),
    "history: a sender past the table": frame(
        0x8B, 1, b"\x07\x00\x00\x00\x00\x01\x00\x01a\x01\x05\x05\x01\x01x"
    ),
    "history: ids not decreasing": frame(
        0x8B, 1, b"\x07\x00\x00\x00\x00\x01\x00\x01a\x02\x05\x05\x00\x01x\x00\x00\x00\x01y"
    ),
    "history: an id falling to 0": frame(
        0x8B, 1, b"\x07\x00\x00\x00\x00\x01\x00\x01a\x02\x05\x05\x00\x01x\x05\x00\x00\x01y"
    ),
    "conversations: more 2": frame(0x8A, 1, b"\x02\x00"),
    "gone: no ids": frame(0xA3, 0, b"\x00"),
}


@pytest.mark.parametrize("how", ["whole", "bytewise"])
@pytest.mark.parametrize("name", list(MALFORMED_S2C))
def test_malformed_version_2_server_frames_are_refused(name: str, how: str) -> None:
    client, _ = pair()
    with pytest.raises(ProtocolError) as info:
        feed(client, MALFORMED_S2C[name], how)
    assert info.value.code is ErrorCode.MALFORMED


def test_history_well_formed_twin_of_the_malformed_vectors_decodes() -> None:
    client, _ = pair()
    data = frame(
        0x8B, 1, b"\x07\x00\x00\x00\x00\x01\x00\x01a\x02\x05\x05\x00\x01x\x01\x00\x00\x01y"
    )
    [page] = feed(client, data, "whole")
    assert [(m.message_id, m.sent_at_ms, m.sender, m.body) for m in page.messages] == [
        (5, 5, "a", "x"),
        (4, 5, "a", "y"),
    ]


def test_what_the_codec_cannot_send_is_refused_locally() -> None:
    client, server = pair()
    with pytest.raises(LocalProtocolError):
        client.send(DeleteMessages(1, ()))
    with pytest.raises(LocalProtocolError):
        client.send(DeleteMessages(1, (5, 5)))
    with pytest.raises(LocalProtocolError):
        server.send(History(1, 7, (), (MESSAGES[2], MESSAGES[0]), False))  # not newest first
    with pytest.raises(LocalProtocolError):
        server.send(MessagesGone(tuple(range(1, MAX_DELETE_IDS + 2))))
    huge = tuple(delivery(1000 - i, "bob", "x" * 60_000, T0) for i in range(2))
    with pytest.raises(LocalProtocolError) as info:
        server.send(History(1, 7, ("bob",), huge, False))
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE  # (the server cuts such a page)


def test_invalid_utf8_is_reported_in_our_words() -> None:
    _, server = pair()
    with pytest.raises(ProtocolError) as info:
        feed(server, frame(0x03, 1, b"\x02\xc3\x28\x02pw"), "whole")
    assert info.value.code is ErrorCode.INVALID_UTF8
    assert info.value.message.startswith("a text field is not well-formed UTF-8 (byte 0xC3")
    assert "codec" not in info.value.message and "utf-8'" not in info.value.message
    _, server = pair()
    with pytest.raises(ProtocolError) as body:
        feed(server, frame(0x06, 1, b"\x01\x03bob\xff"), "whole")  # a SEND body (rest-text)
    assert "byte 0xFF at offset 0" in body.value.message
    client, _ = pair()
    with pytest.raises(LocalProtocolError, match="lone surrogate"):
        client.send(ReadHistory(1, 0, 0, 0, ("\ud800",)))
