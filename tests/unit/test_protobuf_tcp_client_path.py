"""protobuf-tcp's SEND and SENT on the client's side of every send (issue 10): the SEND a client
writes is byte for byte protobuf's own serialization of chat.proto's SendRequest, whether its
recipients were written before or not, and is refused as before when protobuf cannot carry it;
the SENT it reads becomes the same event whatever the reply holds."""

from __future__ import annotations

import pytest

from tests.unit.test_protobuf_tcp_send_path import _open_pair
from transports.custom._events import NEED_DATA, Send, Sent
from transports.custom._wire import ErrorCode, LocalProtocolError, ProtocolError
from transports.grpc._generated import chat_pb2 as chat
from transports.protobuf_tcp import _bodies


def _body_of(frame: bytes, rid: int) -> bytes:
    """The body of a SEND frame (after its length varint, opcode and one-byte request id)."""
    head = 1
    while frame[head - 1] >= 0x80:
        head += 1
    assert frame[head] == 0x06 and frame[head + 1] == rid
    return frame[head + 2 :]


def _library_bytes(recipients: tuple[str, ...] | list[str], body: str) -> bytes:
    return chat.SendRequest(recipients=recipients, body=body).SerializeToString()


SENDS = [
    (("bob",), "hi"),
    (("bob",), "another body to the same recipient"),
    (("carol", "dave", "erin"), "x" * 32),
    (("bob",), ""),  # (an empty body is no field at all)
    (("bob",), "é€😀 unicode"),
    (("carol", "dave", "erin"), "y" * 300),  # (a body whose length takes two varint bytes)
    (tuple(f"user{i}" for i in range(256)), "to the most recipients a SEND may name"),
    (("bob",), "hi"),
]


def test_every_send_is_the_librarys_serialization_whatever_was_sent_before() -> None:
    client, server = _open_pair()
    for recipients, body in SENDS * 2:  # (the second time round, every recipient set again)
        frame = client.send(Send(1, recipients, body))
        assert _body_of(frame, 1) == _library_bytes(recipients, body)
        server.receive_data(frame)
        assert server.next_event() == Send(1, recipients, body)


def test_recipients_given_as_a_list_are_sent_as_the_same_bytes() -> None:
    client, _server = _open_pair()
    names = ["bob", "carol"]
    frame = client.send(Send(1, names, "hi"))  # type: ignore[arg-type]  # (a caller's list)
    assert _body_of(frame, 1) == _library_bytes(names, "hi")


def test_many_different_recipient_sets_are_all_sent_right_and_remembered_boundedly() -> None:
    client, _server = _open_pair()
    for i in range(3 * _bodies._RECIPIENT_SETS):
        recipients = (f"r{i}", f"s{i % 7}")
        assert _body_of(client.send(Send(1, recipients, f"m{i}")), 1) == _library_bytes(
            recipients, f"m{i}"
        )
        assert len(_bodies._recipients_bytes) <= _bodies._RECIPIENT_SETS


def test_a_huge_recipient_list_is_sent_right_but_not_remembered() -> None:
    client, _server = _open_pair()
    recipients = ("n" * 40_000,)  # (beyond any username; the server refuses it, not the codec)
    assert _body_of(client.send(Send(1, recipients, "hi")), 1) == _library_bytes(recipients, "hi")
    assert recipients not in _bodies._recipients_bytes


@pytest.mark.parametrize(
    ("recipients", "body", "code"),
    [
        ((), "hi", ErrorCode.MALFORMED),
        (tuple(f"u{i}" for i in range(257)), "hi", ErrorCode.MALFORMED),
        (("bob\udc80",), "hi", ErrorCode.INVALID_UTF8),  # (a lone surrogate)
        (("bob",), "hi\udc80", ErrorCode.INVALID_UTF8),
        (("bob", 7), "hi", ErrorCode.MALFORMED),  # (not a string)
        (("bob",), 7, ErrorCode.MALFORMED),
    ],
)
def test_a_send_protobuf_cannot_carry_is_refused_and_the_next_one_is_right(
    recipients: tuple[object, ...], body: object, code: ErrorCode
) -> None:
    client, _server = _open_pair()
    client.send(Send(1, ("bob",), "before"))  # ("bob" already written once)
    with pytest.raises(LocalProtocolError) as refused:
        client.send(Send(2, recipients, body))  # type: ignore[arg-type]
    assert refused.value.code == code
    assert _body_of(client.send(Send(3, ("bob",), "after")), 3) == _library_bytes(("bob",), "after")


@pytest.mark.parametrize("rid", [1, 0x7F, 0x80, 2**32 - 1])
def test_send_carries_every_request_id_the_protocol_allows(rid: int) -> None:
    client, server = _open_pair()
    server.receive_data(client.send(Send(rid, ("bob",), "hi")))
    assert server.next_event() == Send(rid, ("bob",), "hi")


def _sent_frame(rid: int, body: bytes) -> bytes:
    frame = bytes((0x86, rid)) + body
    return bytes((len(frame),)) + frame


@pytest.mark.parametrize("unknown", [(), ("ghost",), ("ghost", "nobody")])
def test_a_sent_reply_becomes_its_event(unknown: tuple[str, ...]) -> None:
    client, _server = _open_pair()
    reply = chat.SendReply(
        message_id=2**40,
        sent_at_ms=1_700_000_000_123,
        unknown_recipients=unknown,
        conversation_id=9,
    )
    client.receive_data(_sent_frame(5, reply.SerializeToString()))
    event = client.next_event()
    assert event == Sent(5, 2**40, 1_700_000_000_123, unknown, 9)
    assert type(event) is Sent and type(event.unknown_recipients) is tuple
    assert client.next_event() is NEED_DATA


def test_a_sent_reply_with_fields_it_does_not_know_is_read_without_them() -> None:
    client, _server = _open_pair()
    reply = chat.SendReply(message_id=3, sent_at_ms=4, conversation_id=5).SerializeToString()
    client.receive_data(_sent_frame(1, reply + b"\xa0\x06\x07"))  # (field 100, varint 7)
    assert client.next_event() == Sent(1, 3, 4, (), 5)


@pytest.mark.parametrize(
    ("rid", "body", "code"),
    [
        (0, chat.SendReply(message_id=1).SerializeToString(), ErrorCode.MALFORMED),
        (1, b"\x08", ErrorCode.MALFORMED),  # (a varint cut short)
        (1, b"\x1a\x02\xff\xfe", ErrorCode.INVALID_UTF8),  # (unknown_recipients, not UTF-8)
    ],
)
def test_a_broken_sent_reply_is_the_protocol_error_it_was(
    rid: int, body: bytes, code: ErrorCode
) -> None:
    client, _server = _open_pair()
    client.receive_data(_sent_frame(rid, body))
    with pytest.raises(ProtocolError) as broken:
        client.next_event()
    assert broken.value.code == code
