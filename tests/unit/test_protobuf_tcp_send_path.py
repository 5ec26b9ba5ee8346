"""protobuf-tcp's SEND and SENT, on the path every send takes (issue 10): the bodies are exactly
chat.proto's, whether or not the reply names unknown recipients, and a SEND read from a frame
carries its recipients as a tuple, however many."""

from __future__ import annotations

import pytest

from transports.custom._events import NEED_DATA, Hello, Send, Sent, Welcome
from transports.custom._wire import ErrorCode, LocalProtocolError
from transports.grpc import _convert as convert
from transports.grpc._generated import chat_pb2 as chat
from transports.protobuf_tcp import Connection, Role


def _open_pair() -> tuple[Connection, Connection]:
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    server.receive_data(client.send(Hello(1, 3)))
    assert isinstance(server.next_event(), Hello)
    client.receive_data(server.send(Welcome(3, 65536, 65536, 256)))
    assert isinstance(client.next_event(), Welcome)
    return client, server


@pytest.mark.parametrize("unknown", [(), ("ghost",), ("ghost", "nobody")])
def test_sent_body_is_chat_proto_send_reply(unknown: tuple[str, ...]) -> None:
    client, server = _open_pair()
    sent = Sent(7, 2**40, 1_700_000_000_123, unknown, 3)
    frame = server.send(sent)
    expected = convert.send_reply(sent).SerializeToString()
    assert frame.endswith(expected)  # (length, opcode and request id before it)
    client.receive_data(frame)
    assert client.next_event() == sent
    assert client.next_event() is NEED_DATA


@pytest.mark.parametrize("recipients", [("bob",), ("bob", "carol", "dave")])
def test_send_read_from_a_frame_has_its_recipients_as_a_tuple(
    recipients: tuple[str, ...],
) -> None:
    client, server = _open_pair()
    body = chat.SendRequest(recipients=recipients, body="hi").SerializeToString()
    frame = client.send(Send(5, recipients, "hi"))
    assert frame.endswith(body)
    server.receive_data(frame)
    event = server.next_event()
    assert event == Send(5, recipients, "hi")
    assert type(event.recipients) is tuple


@pytest.mark.parametrize("rid", [1, 0x7F, 0x80, 300, 2**32 - 1])
def test_sent_carries_every_request_id_the_protocol_allows(rid: int) -> None:
    client, server = _open_pair()
    sent = Sent(rid, 9, 1_700_000_000_123, (), 3)
    client.receive_data(server.send(sent))
    assert client.next_event() == sent


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (Sent(0, 9, 1, (), 3), ErrorCode.MALFORMED),  # (a reply answers a request: id >= 1)
        (Sent(2**32, 9, 1, (), 3), ErrorCode.MALFORMED),
        (Sent(1, 2**64, 1, (), 3), ErrorCode.MALFORMED),  # (beyond uint64)
        (Sent(1, 9, 1, ("\udc80",), 3), ErrorCode.INVALID_UTF8),  # (a lone surrogate)
    ],
)
def test_a_sent_the_protocol_cannot_carry_is_refused_before_a_byte_is_written(
    sent: Sent, code: ErrorCode
) -> None:
    _client, server = _open_pair()
    with pytest.raises(LocalProtocolError) as refused:
        server.send(sent)
    assert refused.value.code == code
