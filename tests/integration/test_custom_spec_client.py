"""A client written from PROTOCOL.md alone, against a real server process.

``SpecClient`` imports nothing from wirechat: blocking sockets, the varint and string rules of
section 2, the frame of section 3 and the message layouts of sections 6-7. If it can run a whole
session (handshake, signup, listing, sending, delivery, acks, pending messages at login,
logout, deletion) and sees every session rule of section 9 on the wire, the document is enough
to write an interoperating client.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator

import pytest

from wirechat.launch import ServerProcess

pytestmark = pytest.mark.timeout(60)

# Sections 6-7: opcodes. Section 10: error codes.
HELLO, SIGNUP, LOGIN, LOGOUT, LIST_ACCOUNTS, SEND, ACK, DELETE_ACCOUNT, PING = range(1, 10)
WELCOME, SIGNED_UP, LOGGED_IN, LOGGED_OUT, ACCOUNTS, SENT = range(0x81, 0x87)
DELETED, PONG, DELIVER, ERROR = 0x88, 0x89, 0xA0, 0xFF
INVALID_ARGUMENT, LIMIT_EXCEEDED, USERNAME_TAKEN, AUTH_FAILED, NOT_LOGGED_IN = range(0x10, 0x15)
ALREADY_LOGGED_IN, FORBIDDEN = 0x15, 0x16
ACCOUNT_DELETED = 0x20


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string(text: str) -> bytes:
    data = text.encode("utf-8")
    return varint(len(data)) + data


class Body:
    """Reads the fields of one frame body, in order."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u8(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def string(self) -> str:
        size = self.varint()
        self.pos += size
        return self.data[self.pos - size : self.pos].decode("utf-8")

    def strings(self) -> list[str]:
        return [self.string() for _ in range(self.varint())]

    def rest(self) -> bytes:
        rest, self.pos = self.data[self.pos :], len(self.data)
        return rest

    def done(self) -> None:
        assert self.pos == len(self.data), "bytes left after the last field"


class SpecClient:
    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.buffer = b""
        self.next_id = 1

    def close(self) -> None:
        self.sock.close()

    def write(self, opcode: int, request_id: int, body: bytes = b"") -> bytes:
        inner = bytes([opcode]) + varint(request_id) + body
        data = varint(len(inner)) + inner
        self.sock.sendall(data)
        return data

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def read(self) -> tuple[int, int, Body]:
        """The next frame: (opcode, request id, body)."""
        while True:
            reader = Body(self.buffer)
            try:
                length = reader.varint()
                complete = reader.pos + length <= len(self.buffer)
            except IndexError:
                complete = False
            if complete:
                start = reader.pos
                frame = Body(self.buffer[start : start + length])
                self.buffer = self.buffer[start + length :]
                return frame.u8(), frame.varint(), frame
            if not self._fill():
                raise ConnectionError("closed by the server")

    def expect_close(self) -> None:
        assert self.buffer == b""
        assert not self._fill(), "expected the server to close the connection"

    def hello(self, *, then: tuple[int, bytes] | None = None) -> Body:
        """HELLO (section 5), optionally with one request pipelined right behind it."""
        self.write(HELLO, 0, b"WC" + bytes([1, 1]))
        if then is not None:
            self.write(then[0], 1, then[1])
        opcode, request_id, welcome = self.read()
        assert (opcode, request_id) == (WELCOME, 0)
        return welcome

    def call(self, opcode: int, body: bytes = b"") -> tuple[int, Body]:
        """One request with request id 1 (the lowest free id), and its response."""
        self.write(opcode, 1, body)
        reply, request_id, reply_body = self.read()
        assert request_id == 1
        return reply, reply_body

    def error(self, body: Body) -> int:
        code = body.u8()
        body.rest().decode("utf-8")
        return code


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    proc = ServerProcess(["custom"], tmp_path_factory.mktemp("custom-spec") / "db.sqlite")
    proc.start()
    try:
        yield proc.addresses["custom"]
    finally:
        proc.stop()


@pytest.fixture
def users() -> tuple[str, str]:
    tag = secrets.token_hex(4)
    return f"alice_{tag}", f"bob_{tag}"


def credentials(name: str, password: str = "pw-secret-123") -> bytes:
    return string(name) + string(password)


# Version 3 (sections 6.8, 6.14, 6.15, 7.2, 7.3, 7.18): what a client needs to delete an
# account now, and the resume token.
RESUME, CHANGE_PASSWORD, PASSWORD_CHANGED = 0x0E, 0x0F, 0x8F
RESUME_REFUSED, WEAK_PASSWORD, PASSWORD_CHANGED_END = 0x19, 0x1A, 0x25


def version_3(address: tuple[str, int], opcode: int, body: bytes) -> tuple[SpecClient, Body]:
    """A new connection that offers versions 1..3 and gets 3, then SIGNUP, LOGIN or RESUME:
    its SIGNED_UP / LOGGED_IN, read up to the resume token (LOGGED_IN's name is left)."""
    client = SpecClient(address)
    client.write(HELLO, 0, b"WC" + bytes([1, 3]))
    reply, request_id, welcome = client.read()
    assert (reply, request_id, welcome.u8()) == (WELCOME, 0, 3)
    reply, answer = client.call(opcode, body)
    assert reply == (SIGNED_UP if opcode == SIGNUP else LOGGED_IN), (reply, answer.rest())
    answer.varint()  # pending
    return client, answer


def delete_with_password(address: tuple[str, int], name: str) -> None:
    """Delete the account over version 3 (section 6.8): DELETED, then the server closes."""
    client, answer = version_3(address, LOGIN, credentials(name))
    assert len(answer.string()) == 43 and answer.string() == name
    try:
        opcode, body = client.call(DELETE_ACCOUNT, credentials(name))
        assert opcode == DELETED
        body.done()
        client.expect_close()
    finally:
        client.close()


def test_a_whole_session(address: tuple[str, int], users: tuple[str, str]) -> None:
    alice_name, bob_name = users
    alice, bob = SpecClient(address), SpecClient(address)
    try:
        # Handshake with SIGNUP pipelined behind HELLO (section 5).
        welcome = alice.hello(then=(SIGNUP, credentials(alice_name)))
        assert [welcome.u8(), welcome.varint(), welcome.varint(), welcome.varint()] == [
            1,
            98_304,
            65_536,
            256,
        ]
        welcome.done()
        opcode, request_id, body = alice.read()
        assert (opcode, request_id, body.varint()) == (SIGNED_UP, 1, 0)
        bob.hello()
        opcode, body = bob.call(SIGNUP, credentials(bob_name))
        assert (opcode, body.varint()) == (SIGNED_UP, 0)

        # LIST_ACCOUNTS: pattern, after, limit.
        tag = alice_name.split("_")[1]
        opcode, body = alice.call(LIST_ACCOUNTS, string(f"*_{tag}") + string("") + varint(1))
        assert (opcode, body.u8(), body.strings()) == (ACCOUNTS, 1, [alice_name])
        opcode, body = alice.call(LIST_ACCOUNTS, string(f"*_{tag}") + string(alice_name) + b"\0")
        assert (opcode, body.u8(), body.strings()) == (ACCOUNTS, 0, [bob_name])

        # SEND: recipients, then the body fills the rest of the frame.
        before = time.time() * 1000
        text = "héllo 👋".encode()
        frame = alice.write(SEND, 1, varint(2) + string(bob_name) + string("ghost") + text)
        assert len(frame) == len(text) + len(bob_name) + 5 + 6  # section 11, plus "ghost"
        opcode, request_id, body = alice.read()
        message_id, sent_at = body.varint(), body.varint()
        assert (opcode, request_id, body.strings()) == (SENT, 1, ["ghost"])
        assert message_id > 0 and before - 60_000 < sent_at < time.time() * 1000 + 60_000

        # DELIVER arrives with request id 0; ACK travels with request id 0 and gets no reply.
        opcode, request_id, body = bob.read()
        assert (opcode, request_id) == (DELIVER, 0)
        assert (body.varint(), body.varint(), body.string()) == (message_id, sent_at, alice_name)
        assert body.rest().decode() == "héllo 👋"
        bob.write(ACK, 0, varint(1) + varint(message_id))

        # Messages sent while bob is logged out are pending at his next login, oldest first.
        assert bob.call(LOGOUT)[0] == LOGGED_OUT
        ids = []
        for text in ("one", "two"):
            opcode, body = alice.call(SEND, varint(1) + string(bob_name) + text.encode())
            ids.append(body.varint())
        opcode, body = bob.call(LOGIN, credentials(bob_name))
        assert (opcode, body.varint()) == (LOGGED_IN, 2)  # the acked message is not pending
        for message_id, text in zip(ids, ("one", "two"), strict=True):
            opcode, request_id, body = bob.read()
            assert (opcode, request_id, body.varint()) == (DELIVER, 0, message_id)
            body.varint()
            assert (body.string(), body.rest()) == (alice_name, text.encode())
        bob.write(ACK, 0, varint(2) + varint(ids[0]) + varint(ids[1] - ids[0]))  # deltas
        opcode, body = bob.call(PING, b"\x00still here")  # answered after the ACK: it is done
        assert (opcode, body.rest()) == (PONG, b"\x00still here")
        assert bob.call(LOGOUT)[0] == LOGGED_OUT
        assert bob.call(LOGIN, credentials(bob_name))[1].varint() == 0

        # DELETE_ACCOUNT of version 1 carries no password: refused, the session stays
        # (section 6.8); deleting over version 3 ends this session too (section 9.2).
        opcode, body = bob.call(DELETE_ACCOUNT, string(bob_name))
        assert (opcode, bob.error(body)) == (ERROR, AUTH_FAILED)
        assert bob.call(LIST_ACCOUNTS, string(bob_name) + string("") + b"\0")[0] == ACCOUNTS
        delete_with_password(address, bob_name)
        opcode, request_id, body = bob.read()
        assert (opcode, request_id, bob.error(body)) == (ERROR, 0, ACCOUNT_DELETED)
        bob.expect_close()
        opcode, body = alice.call(LIST_ACCOUNTS, string(f"*_{tag}") + string("") + b"\0")
        assert (body.u8(), body.strings()) == (0, [alice_name])
    finally:
        alice.close()
        bob.close()


def test_session_rules_on_the_wire(address: tuple[str, int], users: tuple[str, str]) -> None:
    alice_name, bob_name = users
    anonymous = SpecClient(address)
    anonymous.hello()
    # A request that needs a session gets NOT_LOGGED_IN; the connection stays open.
    opcode, body = anonymous.call(LIST_ACCOUNTS, string("*") + string("") + b"\0")
    assert (opcode, anonymous.error(body)) == (ERROR, NOT_LOGGED_IN)
    anonymous.write(ACK, 0, b"\x01\x05")  # a failed ACK is answered on request id 0
    opcode, request_id, body = anonymous.read()
    assert (opcode, request_id, anonymous.error(body)) == (ERROR, 0, NOT_LOGGED_IN)
    assert anonymous.call(PING)[0] == PONG
    # Any error reply to SIGNUP or LOGIN is followed by the server closing.
    opcode, body = anonymous.call(SIGNUP, credentials("not a valid name!"))
    assert (opcode, anonymous.error(body)) == (ERROR, INVALID_ARGUMENT)
    anonymous.expect_close()
    anonymous.close()

    alice = SpecClient(address)
    alice.hello()
    assert alice.call(SIGNUP, credentials(alice_name))[0] == SIGNED_UP
    # Request-level errors of a logged-in session keep it open.
    opcode, body = alice.call(SIGNUP, credentials(alice_name))
    assert (opcode, alice.error(body)) == (ERROR, ALREADY_LOGGED_IN)
    opcode, body = alice.call(SEND, varint(1) + string(alice_name) + b"x" * 65_537)
    assert (opcode, alice.error(body)) == (ERROR, LIMIT_EXCEEDED)
    opcode, body = alice.call(SEND, varint(2) + string(alice_name) * 2 + b"twice")
    assert (opcode, alice.error(body)) == (ERROR, INVALID_ARGUMENT)
    opcode, body = alice.call(DELETE_ACCOUNT, string(bob_name))
    assert (opcode, alice.error(body)) == (ERROR, FORBIDDEN)

    for code, attempt in ((USERNAME_TAKEN, SIGNUP), (AUTH_FAILED, LOGIN)):
        other = SpecClient(address)
        other.hello()
        opcode, body = other.call(attempt, credentials(alice_name, "wrong password"))
        assert (opcode, other.error(body)) == (ERROR, code)
        other.expect_close()
        other.close()

    # Deleting an account ends every session of it: the other device gets ERROR
    # ACCOUNT_DELETED on request id 0, then the server closes.
    phone = SpecClient(address)
    phone.hello()
    assert phone.call(LOGIN, credentials(alice_name))[0] == LOGGED_IN
    delete_with_password(address, alice_name)
    for device in (alice, phone):
        opcode, request_id, body = device.read()
        assert (opcode, request_id, device.error(body)) == (ERROR, 0, ACCOUNT_DELETED)
    alice.expect_close()
    phone.expect_close()
    alice.close()
    phone.close()


def test_version_3_resume_and_change_password_from_the_document(
    address: tuple[str, int], users: tuple[str, str]
) -> None:
    alice_name, _ = users
    first, signed_up = version_3(address, SIGNUP, credentials(alice_name))
    token = signed_up.string()
    signed_up.done()
    first.close()  # the connection drops; the token resumes the account (section 6.14)
    again, logged_in = version_3(address, RESUME, string(token))
    assert (logged_in.string(), logged_in.string()) == (token, alice_name)
    logged_in.done()
    refused, _ = version_3(address, LOGIN, credentials(alice_name))
    # CHANGE_PASSWORD (section 6.15): a weak new one is refused and the session stays; a good
    # one ends the other sessions (ERROR PASSWORD_CHANGED on request id 0) with a new token.
    weak = string("pw-secret-123") + string("short") + b"\x01"
    opcode, body = again.call(CHANGE_PASSWORD, weak)
    assert (opcode, again.error(body)) == (ERROR, WEAK_PASSWORD)
    opcode, body = again.call(
        CHANGE_PASSWORD, string("pw-secret-123") + string("a-new-one-9") + b"\x01"
    )
    assert opcode == PASSWORD_CHANGED
    new_token = body.string()
    assert (len(new_token), body.varint()) == (43, 1)
    body.done()
    opcode, request_id, body = refused.read()
    assert (opcode, request_id, refused.error(body)) == (ERROR, 0, PASSWORD_CHANGED_END)
    refused.expect_close()
    refused.close()
    # The old token is refused (then the server closes); the new one resumes.
    stale = SpecClient(address)
    stale.write(HELLO, 0, b"WC" + bytes([1, 3]))
    stale.read()
    opcode, body = stale.call(RESUME, string(token))
    assert (opcode, stale.error(body)) == (ERROR, RESUME_REFUSED)
    stale.expect_close()
    stale.close()
    fresh, logged_in = version_3(address, RESUME, string(new_token))
    assert logged_in.string() == new_token
    fresh.close()
    again.close()
