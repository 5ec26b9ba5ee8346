"""A protobuf-tcp client written from the contract alone, against a real server process; and the
refusal of a peer of the other protocol, both ways.

``PbClient`` uses blocking sockets, the frame of custom PROTOCOL.md section 3 and the messages
generated from chat.proto and frames.proto (what any protobuf user starts from); it imports none
of wirechat's codecs. Bodies are protobuf (protobuf_tcp/PROTOCOL.md section 2), except HELLO and
an ERROR before WELCOME, which keep the custom layout (section 3).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable, Iterator

import pytest
from google.protobuf.message import Message

from core.client import ChatClient
from transports import custom, protobuf_tcp
from transports.grpc._generated import chat_pb2 as chat
from transports.protobuf_tcp._generated import frames_pb2 as frames
from wirechat.launch import ServerProcess

pytestmark = pytest.mark.timeout(60)

HELLO, SIGNUP, LOGIN, LOGOUT, LIST_ACCOUNTS, SEND, ACK, DELETE_ACCOUNT, PING = range(1, 10)
WELCOME, SIGNED_UP, LOGGED_IN, LOGGED_OUT, ACCOUNTS, SENT = range(0x81, 0x87)
DELETED, PONG, DELIVER, ERROR = 0x88, 0x89, 0xA0, 0xFF
LIST_CONVERSATIONS, READ_HISTORY, MARK_READ, DELETE_MESSAGES = range(0x0A, 0x0E)
CONVERSATIONS, HISTORY, MARKED_READ, REMOVED = range(0x8A, 0x8E)
SENT_COPY, READ_MARK, MESSAGES_GONE = 0xA1, 0xA2, 0xA3
RESUME, CHANGE_PASSWORD, PASSWORD_CHANGED = 0x0E, 0x0F, 0x8F
MALFORMED, BAD_HANDSHAKE, INVALID_UTF8 = 0x01, 0x05, 0x06
AUTH_FAILED, NOT_LOGGED_IN, ACCOUNT_DELETED = 0x13, 0x14, 0x20
RESUME_REFUSED, WEAK_PASSWORD, PASSWORD_CHANGED_END = 0x19, 0x1A, 0x25


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


class PbClient:
    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def write(self, opcode: int, request_id: int, body: bytes | Message = b"") -> bytes:
        if isinstance(body, Message):
            body = body.SerializeToString()
        inner = bytes([opcode]) + varint(request_id) + body
        data = varint(len(inner)) + inner
        self.sock.sendall(data)
        return data

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def read(self) -> tuple[int, int, bytes]:
        """The next frame: (opcode, request id, body bytes)."""
        while True:
            try:
                length, start = read_varint(self.buffer, 0)
                if start + length <= len(self.buffer):
                    frame = self.buffer[start : start + length]
                    self.buffer = self.buffer[start + length :]
                    request_id, body_start = read_varint(frame, 1)
                    return frame[0], request_id, frame[body_start:]
            except IndexError:
                pass
            if not self._fill():
                raise ConnectionError("closed by the server")

    def expect_close(self) -> None:
        assert self.buffer == b""
        assert not self._fill(), "expected the server to close the connection"

    def hello(
        self, *, then: tuple[int, Message] | None = None, versions: bytes = b"\x01\x01"
    ) -> frames.Welcome:
        self.write(HELLO, 0, b"WP" + versions)
        if then is not None:
            self.write(then[0], 1, then[1])
        opcode, request_id, body = self.read()
        assert (opcode, request_id) == (WELCOME, 0)
        return frames.Welcome.FromString(body)

    def call(self, opcode: int, message: Message) -> tuple[int, bytes]:
        self.write(opcode, 1, message)
        reply, request_id, body = self.read()
        assert request_id == 1
        return reply, body


def error_of(body: bytes) -> int:
    return int(frames.Error.FromString(body).code)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("protobuf-tcp") / "db.sqlite"
    proc = ServerProcess(["protobuf-tcp", "custom"], db)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def address(server: ServerProcess) -> tuple[str, int]:
    return server.addresses["protobuf-tcp"]


@pytest.fixture
def users() -> tuple[str, str]:
    tag = secrets.token_hex(4)
    return f"alice_{tag}", f"bob_{tag}"


def signup(name: str, password: str = "pw-secret-123") -> chat.SignupRequest:
    return chat.SignupRequest(username=name, password=password)


def test_a_whole_session(address: tuple[str, int], users: tuple[str, str]) -> None:
    alice_name, bob_name = users
    alice, bob = PbClient(address), PbClient(address)
    try:
        welcome = alice.hello(then=(SIGNUP, signup(alice_name)))
        assert (welcome.version, welcome.max_frame, welcome.max_body) == (1, 98_304, 65_536)
        assert welcome.max_recipients == 256
        opcode, request_id, body = alice.read()
        assert (opcode, request_id, chat.LoginReply.FromString(body).pending) == (SIGNED_UP, 1, 0)
        assert body == b""  # pending 0, and no token or name: not on the wire
        bob.hello()
        assert bob.call(SIGNUP, signup(bob_name))[0] == SIGNED_UP

        tag = alice_name.split("_")[1]
        opcode, body = alice.call(LIST_ACCOUNTS, chat.ListAccountsRequest(pattern=f"*_{tag}"))
        page = chat.ListAccountsReply.FromString(body)
        assert (opcode, list(page.usernames), page.more) == (
            ACCOUNTS,
            [alice_name, bob_name],
            False,
        )

        # SEND costs what PROTOCOL.md section 6 says: P = len(B) + len(N) + 5 + V(len(B)).
        text = "héllo 👋"
        request = chat.SendRequest(recipients=[bob_name], body=text)
        frame = alice.write(SEND, 1, request)
        assert len(frame) == len(text.encode()) + len(bob_name) + 7
        opcode, request_id, body = alice.read()
        sent = chat.SendReply.FromString(body)
        assert (opcode, request_id, list(sent.unknown_recipients)) == (SENT, 1, [])
        assert sent.message_id > 0 and sent.sent_at_ms > 1_700_000_000_000

        opcode, request_id, body = bob.read()
        delivery = chat.Delivery.FromString(body)
        assert (opcode, request_id) == (DELIVER, 0)
        assert (delivery.message_id, delivery.sender, delivery.body) == (
            sent.message_id,
            alice_name,
            text,
        )
        bob.write(ACK, 0, chat.AckRequest(message_ids=[delivery.message_id]))

        # Unknown recipients are named in SENT; pending messages come at the next login.
        assert bob.call(LOGOUT, chat.LogoutRequest())[0] == LOGGED_OUT
        ids = []
        for body_text in ("one", "two"):
            opcode, body = alice.call(
                SEND, chat.SendRequest(recipients=[bob_name, "ghost"], body=body_text)
            )
            reply = chat.SendReply.FromString(body)
            assert list(reply.unknown_recipients) == ["ghost"]
            ids.append(reply.message_id)
        opcode, body = bob.call(
            LOGIN, chat.LoginRequest(username=bob_name, password="pw-secret-123")
        )
        assert (opcode, chat.LoginReply.FromString(body).pending) == (LOGGED_IN, 2)
        for message_id, body_text in zip(ids, ("one", "two"), strict=True):
            opcode, request_id, body = bob.read()
            delivery = chat.Delivery.FromString(body)
            assert (opcode, delivery.message_id, delivery.body) == (DELIVER, message_id, body_text)
        bob.write(ACK, 0, chat.AckRequest(message_ids=ids))
        opcode, body = bob.call(PING, frames.Ping(payload=b"\x00still here"))
        assert (opcode, frames.Pong.FromString(body).payload) == (PONG, b"\x00still here")

        # Deleting an account needs its password since version 3 (issue 13): a version 1
        # client, whose DELETE_ACCOUNT has no password field, is refused and nothing is deleted.
        opcode, body = bob.call(DELETE_ACCOUNT, chat.DeleteAccountRequest(username=bob_name))
        assert (opcode, error_of(body)) == (ERROR, AUTH_FAILED)
        assert "update your client" in frames.Error.FromString(body).message
        opcode, body = bob.call(LIST_ACCOUNTS, chat.ListAccountsRequest(pattern=bob_name))
        assert list(chat.ListAccountsReply.FromString(body).usernames) == [bob_name]
    finally:
        alice.close()
        bob.close()


def test_version_2_history_read_marks_and_deletion(
    address: tuple[str, int], users: tuple[str, str]
) -> None:
    """The version 2 frames, from the contract alone: chat.proto's history messages."""
    alice_name, bob_name = users
    alice, phone, bob = PbClient(address), PbClient(address), PbClient(address)
    try:
        assert alice.hello(then=(SIGNUP, signup(alice_name)), versions=b"\x01\x02").version == 2
        assert alice.read()[0] == SIGNED_UP
        phone.hello(versions=b"\x01\x02")
        login = chat.LoginRequest(username=alice_name, password="pw-secret-123")
        assert phone.call(LOGIN, login)[0] == LOGGED_IN
        bob.hello(versions=b"\x01\x02")
        assert bob.call(SIGNUP, signup(bob_name))[0] == SIGNED_UP

        opcode, body = alice.call(SEND, chat.SendRequest(recipients=[bob_name], body="hi"))
        sent = chat.SendReply.FromString(body)
        assert opcode == SENT and sent.conversation_id > 0
        opcode, request_id, body = bob.read()  # the conversation as bob sees it
        delivery = chat.Delivery.FromString(body)
        assert (opcode, request_id, list(delivery.participants)) == (DELIVER, 0, [alice_name])
        assert delivery.conversation_id == sent.conversation_id
        bob.write(ACK, 0, chat.AckRequest(message_ids=[delivery.message_id]))
        opcode, request_id, body = phone.read()  # "sent by you", on alice's other session
        copy = chat.Delivery.FromString(body)
        assert (opcode, copy.message_id, list(copy.participants)) == (
            SENT_COPY,
            sent.message_id,
            [bob_name],
        )

        opcode, body = bob.call(READ_HISTORY, chat.ReadHistoryRequest(participants=[alice_name]))
        page = chat.ReadHistoryReply.FromString(body)
        assert (opcode, page.conversation_id, list(page.participants)) == (
            HISTORY,
            sent.conversation_id,
            [alice_name],
        )
        assert [(m.message_id, m.sender, m.body) for m in page.messages] == [
            (sent.message_id, alice_name, "hi")
        ]
        opcode, body = bob.call(LIST_CONVERSATIONS, chat.ListConversationsRequest())
        (conversation,) = chat.ListConversationsReply.FromString(body).conversations
        assert (opcode, conversation.unread) == (CONVERSATIONS, 1)
        mark = chat.MarkReadRequest(conversation_id=sent.conversation_id, up_to_id=sent.message_id)
        opcode, body = bob.call(MARK_READ, mark)
        marker = chat.ReadMarker.FromString(body)
        assert (opcode, marker.up_to_id, marker.unread) == (MARKED_READ, sent.message_id, 0)

        delete = chat.DeleteMessagesRequest(message_ids=[sent.message_id], for_everyone=True)
        assert alice.call(DELETE_MESSAGES, delete) == (REMOVED, b"")
        for client in (alice, phone, bob):  # every session of everyone who lost a copy
            opcode, request_id, body = client.read()
            gone = chat.MessagesDeleted.FromString(body)
            assert (opcode, request_id, list(gone.message_ids)) == (
                MESSAGES_GONE,
                0,
                [sent.message_id],
            )
    finally:
        for client in (alice, phone, bob):
            client.close()


def test_version_3_resume_change_password_and_deletion(
    address: tuple[str, int], users: tuple[str, str]
) -> None:
    """The version 3 frames, from the contract alone: a LoginReply with the resume token,
    RESUME, CHANGE_PASSWORD and DELETE_ACCOUNT with the password, and the new error codes."""
    alice_name, _ = users
    here, there, back, stranger = (PbClient(address) for _ in range(4))
    try:
        assert here.hello(then=(SIGNUP, signup(alice_name)), versions=b"\x01\x03").version == 3
        opcode, request_id, body = here.read()
        signed = chat.LoginReply.FromString(body)
        assert (opcode, signed.pending, len(signed.resume_token)) == (SIGNED_UP, 0, 43)
        assert signed.username == ""  # (a signup names its account itself)

        there.hello(versions=b"\x01\x03")
        opcode, body = there.call(RESUME, chat.ResumeRequest(resume_token=signed.resume_token))
        resumed = chat.LoginReply.FromString(body)
        assert (opcode, resumed.username, resumed.resume_token) == (
            LOGGED_IN,
            alice_name,
            signed.resume_token,
        )

        weak = chat.ChangePasswordRequest(old_password="pw-secret-123", new_password="12345")
        opcode, body = here.call(CHANGE_PASSWORD, weak)
        assert (opcode, error_of(body)) == (ERROR, WEAK_PASSWORD)
        change = chat.ChangePasswordRequest(
            old_password="pw-secret-123", new_password="pw-secret-456", end_other_sessions=True
        )
        opcode, body = here.call(CHANGE_PASSWORD, change)
        changed = chat.ChangePasswordReply.FromString(body)
        assert (opcode, changed.sessions_ended, len(changed.resume_token)) == (
            PASSWORD_CHANGED,
            1,
            43,
        )
        opcode, request_id, body = there.read()  # the other session ends
        assert (opcode, request_id, error_of(body)) == (ERROR, 0, PASSWORD_CHANGED_END)
        there.expect_close()

        stranger.hello(versions=b"\x01\x03")
        old = chat.ResumeRequest(resume_token=signed.resume_token)
        opcode, body = stranger.call(RESUME, old)
        assert (opcode, error_of(body)) == (ERROR, RESUME_REFUSED)
        stranger.expect_close()
        back.hello(versions=b"\x01\x03")
        opcode, body = back.call(RESUME, chat.ResumeRequest(resume_token=changed.resume_token))
        assert (opcode, chat.LoginReply.FromString(body).username) == (LOGGED_IN, alice_name)

        wrong = chat.DeleteAccountRequest(username=alice_name, password="pw-secret-123")
        opcode, body = here.call(DELETE_ACCOUNT, wrong)
        assert (opcode, error_of(body)) == (ERROR, AUTH_FAILED)
        right = chat.DeleteAccountRequest(username=alice_name, password="pw-secret-456")
        assert here.call(DELETE_ACCOUNT, right) == (DELETED, b"")
        here.expect_close()
        opcode, request_id, body = back.read()
        assert (opcode, request_id, error_of(body)) == (ERROR, 0, ACCOUNT_DELETED)
        back.expect_close()
    finally:
        for client in (here, there, back, stranger):
            client.close()


def test_errors_are_protobuf_after_welcome(address: tuple[str, int]) -> None:
    client = PbClient(address)
    client.hello()
    opcode, body = client.call(LIST_ACCOUNTS, chat.ListAccountsRequest(pattern="*"))
    assert (opcode, error_of(body)) == (ERROR, NOT_LOGGED_IN)
    assert "log in" in frames.Error.FromString(body).message
    opcode, body = client.call(LOGIN, chat.LoginRequest(username="nobody_x", password="nope"))
    assert (opcode, error_of(body)) == (ERROR, AUTH_FAILED)
    client.expect_close()
    client.close()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (bytes.fromhex("0a 09 62 6f 62"), MALFORMED),  # a string past the end of the frame
        (bytes.fromhex("12 02 68 69"), MALFORMED),  # no recipient
        (bytes.fromhex("0a 02 c3 28 12 01 78"), INVALID_UTF8),
    ],
)
def test_a_bad_body_is_answered_and_closed(
    address: tuple[str, int], body: bytes, code: int
) -> None:
    client = PbClient(address)
    client.hello()
    client.write(SEND, 1, body)
    opcode, request_id, reply = client.read()
    assert (opcode, request_id, error_of(reply)) == (ERROR, 0, code)
    client.expect_close()
    client.close()
    other = PbClient(address)  # the server is unharmed
    other.hello()
    assert other.call(PING, frames.Ping())[0] == PONG
    other.close()


def test_a_custom_hello_is_refused_clearly(address: tuple[str, int]) -> None:
    client = PbClient(address)
    client.write(HELLO, 0, b"WC\x01\x01")
    opcode, request_id, body = client.read()
    # Before WELCOME the ERROR is the custom layout: a code byte, then the text.
    assert (opcode, request_id, body[0]) == (ERROR, 0, BAD_HANDSHAKE)
    assert "protobuf-tcp" in body[1:].decode() and "custom" in body[1:].decode()
    client.expect_close()
    client.close()


def test_real_clients_of_the_other_protocol_are_told_why(server: ServerProcess) -> None:
    async def refused(open_client: Callable[..., ChatClient], address: tuple[str, int]) -> str:
        client = open_client(address)
        with pytest.raises(ConnectionError) as info:
            await client.connect()
        return str(info.value)

    async def both() -> tuple[str, str]:
        return (
            await refused(custom.open_client, server.addresses["protobuf-tcp"]),
            await refused(protobuf_tcp.open_client, server.addresses["custom"]),
        )

    custom_at_ours, ours_at_custom = asyncio.run(both())
    # Each is told, in words, which protocol the port speaks and which transport to pick.
    assert "speaks wirechat's protobuf-tcp protocol" in custom_at_ours
    assert "--transport protobuf-tcp" in custom_at_ours
    assert "--transport custom" in ours_at_custom
