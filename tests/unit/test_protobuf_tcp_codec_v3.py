"""The protobuf-tcp codec's version 3 (account security, issue 13) with plain bytes: its tables
agree with the custom protocol's, its bodies are the chat.proto messages a gRPC client reads,
and a version 1 or 2 connection is left exactly as it was.

The hex examples of PROTOCOL.md ("Version 3") are checked by test_protobuf_tcp_doc.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from transports.custom import _messages
from transports.custom._events import NEED_DATA, DeleteAccount, Hello, LoggedIn, SignedUp, Welcome
from transports.custom._security import ChangePassword, PasswordChanged, Resume
from transports.custom._wire import (
    MAX_BODY,
    MAX_FRAME,
    MAX_RECIPIENTS,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
)
from transports.grpc._generated import chat_pb2 as chat
from transports.protobuf_tcp import _bodies_v3
from transports.protobuf_tcp._codec import Connection, Role

TOKEN = "cGQ8vKvp2X7ISmMkoa9CWoCBK1DoBqekqCIJwTBrk4s"


def pair(offer: tuple[int, int] = (1, 3)) -> tuple[Connection, Connection]:
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


def test_tables_have_the_custom_opcodes_and_kinds() -> None:
    """The custom handshake tables of version 3 apply only if every opcode has the same kind."""

    def shape(specs: Any) -> list[Any]:
        return [spec[:3] for spec in specs]

    assert shape(_bodies_v3.CLIENT_MESSAGES_V3) == shape(_messages.CLIENT_MESSAGES_V3)
    assert shape(_bodies_v3.SERVER_MESSAGES_V3) == shape(_messages.SERVER_MESSAGES_V3)


def test_version_3_is_chosen_when_offered() -> None:
    client, server = pair()
    assert client.version == server.version == 3


@pytest.mark.parametrize(
    "event",
    [
        Resume(1, TOKEN),
        ChangePassword(2, "correct horse", "battery staple 42", True),
        ChangePassword(2, "correct horse", "battery staple 42", False),
        DeleteAccount(3, "alice", "battery staple 42"),
        DeleteAccount(3, "alice", ""),
    ],
)
@pytest.mark.parametrize("bytewise", [False, True])
def test_requests_round_trip(event: Any, bytewise: bool) -> None:
    client, server = pair()
    assert feed(server, client.send(event), bytewise=bytewise) == [event]


@pytest.mark.parametrize(
    "event",
    [
        LoggedIn(1, 2, TOKEN, "alice"),
        SignedUp(1, 0, TOKEN),
        PasswordChanged(2, TOKEN, 0),
        PasswordChanged(2**32 - 1, TOKEN, 2**32 - 1),
    ],
)
@pytest.mark.parametrize("bytewise", [False, True])
def test_replies_round_trip(event: Any, bytewise: bool) -> None:
    client, server = pair()
    assert feed(client, server.send(event), bytewise=bytewise) == [event]


def test_bodies_are_the_chat_proto_messages() -> None:
    """A gRPC client's generated code reads every version 3 body."""
    client, server = pair()
    reply = chat.LoginReply.FromString(server.send(LoggedIn(1, 2, TOKEN, "alice"))[3:])
    assert (reply.username, reply.pending, reply.resume_token) == ("alice", 2, TOKEN)
    changed = chat.ChangePasswordReply.FromString(server.send(PasswordChanged(2, TOKEN, 1))[3:])
    assert (changed.resume_token, changed.sessions_ended) == (TOKEN, 1)
    request = chat.ResumeRequest.FromString(client.send(Resume(1, TOKEN))[3:])
    assert request.resume_token == TOKEN
    extra = chat.ResumeRequest(resume_token=TOKEN, notices=True).SerializeToString()
    assert feed(server, bytes([2 + len(extra), 0x0E, 1]) + extra) == [Resume(1, TOKEN)]


@pytest.mark.parametrize("offer", [(1, 1), (1, 2)])
def test_a_version_1_or_2_connection_is_unchanged(offer: tuple[int, int]) -> None:
    client, server = pair(offer)
    # LOGGED_IN sends only its version 1 field: the first edition's bytes
    assert server.send(LoggedIn(1, 2, TOKEN, "alice")) == bytes.fromhex("04 83 01 18 02")
    # DELETE_ACCOUNT's password is not part of it (the server then refuses the deletion)
    data = client.send(DeleteAccount(3, "alice", "battery staple 42"))
    assert feed(server, data) == [DeleteAccount(3, "alice")]
    # and the version 3 messages are not part of it, either way
    with pytest.raises(LocalProtocolError) as refused:
        client.send(Resume(1, TOKEN))
    assert refused.value.code is ErrorCode.UNKNOWN_OPCODE
    with pytest.raises(LocalProtocolError):
        server.send(PasswordChanged(2, TOKEN, 1))
    with pytest.raises(ProtocolError) as error:
        feed(server, bytes.fromhex("04 0f 02 18 01"))  # CHANGE_PASSWORD
    assert error.value.code is ErrorCode.UNKNOWN_OPCODE


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (bytes.fromhex("05 0e 00 0a 01 78"), ErrorCode.MALFORMED),  # request id 0
        (bytes.fromhex("06 0e 01 0a 02 c3 28"), ErrorCode.INVALID_UTF8),  # the token
        (bytes.fromhex("04 0f 01 0a 05"), ErrorCode.MALFORMED),  # a truncated field
    ],
)
def test_malformed_requests(data: bytes, code: ErrorCode) -> None:
    _, server = pair()
    with pytest.raises(ProtocolError) as refused:
        feed(server, data)
    assert refused.value.code is code
