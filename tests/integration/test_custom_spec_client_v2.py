"""A version 2 client written from PROTOCOL.md alone, beside a version 1 one, on a real server.

Like ``test_custom_spec_client`` (whose wire helpers it reuses: the varint, string and frame rules
of sections 2-3, nothing from wirechat), it speaks bytes: HELLO offering versions 1..2, the
version 2 layouts of SENT and DELIVER, the four history requests and their responses, and the
three pushes. A version 1 client of the same user runs alongside and must see exactly version 1
(section 5). The behaviours this revision settled (section 13) are checked on the wire too.
"""

from __future__ import annotations

import bisect
import itertools
import secrets
import socket
from collections.abc import Iterator

import pytest

from tests.integration.test_custom_spec_client import (
    ACCOUNT_DELETED,
    DELETE_ACCOUNT,
    DELETED,
    DELIVER,
    ERROR,
    FORBIDDEN,
    LOGIN,
    PING,
    PONG,
    SEND,
    SENT,
    SIGNED_UP,
    SIGNUP,
    WELCOME,
    Body,
    SpecClient,
    credentials,
    delete_with_password,
    string,
    varint,
    version_3,
)
from wirechat.launch import ServerProcess

pytestmark = pytest.mark.timeout(60)

# Section 6 and 7, version 2.
LIST_CONVERSATIONS, READ_HISTORY, MARK_READ, DELETE_MESSAGES = 0x0A, 0x0B, 0x0C, 0x0D
CONVERSATIONS, HISTORY, MARKED_READ, REMOVED = 0x8A, 0x8B, 0x8C, 0x8D
SENT_COPY, READ_MARK, MESSAGES_GONE = 0xA1, 0xA2, 0xA3
PUSHES = {DELIVER, SENT_COPY, READ_MARK, MESSAGES_GONE}
SENDER_DELETED, SENDER_IS_PARTICIPANT = 0x01, 0x02
UNKNOWN_OPCODE, INVALID_UTF8 = 0x04, 0x06


def s64(body: Body) -> int:
    """Section 2: zigzag."""
    z = body.varint()
    return (z >> 1) ^ -(z & 1)


def id_list(ids: list[int]) -> bytes:
    """Section 2: count, first id, then differences."""
    out = varint(len(ids)) + varint(ids[0])
    for previous, current in itertools.pairwise(ids):
        out += varint(current - previous)
    return out


def read_id_list(body: Body) -> list[int]:
    ids = [body.varint() for _ in range(body.varint())]
    for i in range(1, len(ids)):
        ids[i] += ids[i - 1]
    return ids


def message(body: Body) -> dict[str, object]:
    """The fields of a version 2 DELIVER (and SENT_COPY) after the request id (section 7.9)."""
    message_id, sent_at, conversation = body.varint(), body.varint(), body.varint()
    flags = body.u8()
    sender = body.string()
    participants = body.strings()
    if flags & SENDER_IS_PARTICIPANT:
        bisect.insort(participants, sender)
    return {
        "id": message_id,
        "sent_at": sent_at,
        "conversation": conversation,
        "sender_deleted": bool(flags & SENDER_DELETED),
        "sender": sender,
        "participants": participants,
        "body": body.rest().decode(),
    }


def history(body: Body) -> dict[str, object]:
    """HISTORY (section 7.12): the senders table, then the delta-coded messages."""
    page: dict[str, object] = {
        "conversation": body.varint(),
        "read_up_to": body.varint(),
        "more": body.u8(),
        "participants": body.strings(),
        "deleted": body.strings(),
    }
    senders = []
    for _ in range(body.varint()):
        flags = body.u8()
        senders.append((body.string(), bool(flags & SENDER_DELETED)))
    messages = []
    message_id = sent_at = 0
    for i in range(body.varint()):
        if i == 0:
            message_id, sent_at = body.varint(), body.varint()
        else:
            message_id -= body.varint()
            sent_at += s64(body)
        sender, deleted = senders[body.varint()]
        messages.append((message_id, sent_at, sender, deleted, body.string()))
    body.done()
    page["messages"] = messages
    return page


class SpecClientV2(SpecClient):
    """SpecClient offering versions 1..2; pushes that arrive before a response are kept."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address)
        self.pushes: list[tuple[int, Body]] = []

    def hello(self, *, then: tuple[int, bytes] | None = None) -> Body:
        self.write(0x01, 0, b"WC" + bytes([1, 2]))
        if then is not None:
            self.write(then[0], 1, then[1])
        opcode, request_id, welcome = self.read()
        assert (opcode, request_id) == (WELCOME, 0)
        return welcome

    def call(self, opcode: int, body: bytes = b"") -> tuple[int, Body]:
        self.write(opcode, 1, body)
        while True:
            reply, request_id, reply_body = self.read()
            if request_id == 0 and reply in PUSHES:
                self.pushes.append((reply, reply_body))
                continue
            assert request_id == 1
            return reply, reply_body

    def push(self, opcode: int) -> Body:
        """The next push (kept or read now); every push before it must be of other kinds."""
        for _ in range(20):
            if self.pushes:
                got, body = self.pushes.pop(0)
            else:
                got, request_id, body = self.read()
                assert request_id == 0 and got in PUSHES, (got, request_id)
            if got == opcode:
                return body
        raise AssertionError(f"no push 0x{opcode:02X}")


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    proc = ServerProcess(["custom"], tmp_path_factory.mktemp("custom-spec-v2") / "db.sqlite")
    proc.start()
    try:
        yield proc.addresses["custom"]
    finally:
        proc.stop()


@pytest.fixture
def users() -> tuple[str, str]:
    tag = secrets.token_hex(4)
    return f"alice_{tag}", f"bob_{tag}"


def test_version_2_end_to_end_beside_a_version_1_device(
    address: tuple[str, int], users: tuple[str, str]
) -> None:
    alice_name, bob_name = users
    alice, laptop, phone = SpecClientV2(address), SpecClientV2(address), SpecClientV2(address)
    old = SpecClient(address)  # bob's device that speaks only version 1
    try:
        welcome = alice.hello(then=(SIGNUP, credentials(alice_name)))
        assert welcome.u8() == 2  # the server speaks version 2
        assert alice.read()[0] == SIGNED_UP
        laptop.hello()
        assert laptop.call(SIGNUP, credentials(bob_name))[0] == SIGNED_UP
        for device in (phone, old):
            device.hello()
            assert device.call(LOGIN, credentials(bob_name))[0] == 0x83

        # SENT names the conversation (section 7.6, version 2).
        opcode, body = alice.call(SEND, varint(1) + string(bob_name) + b"hello bob")
        assert opcode == SENT
        first_id, sent_at, conversation = body.varint(), body.varint(), body.varint()
        assert body.strings() == [] and conversation > 0

        # DELIVER, version 2 on the v2 devices: a 1:1 message sends the sender once (flag 0x02).
        for device in (laptop, phone):
            got = message(device.push(DELIVER))
            assert got == {
                "id": first_id,
                "sent_at": sent_at,
                "conversation": conversation,
                "sender_deleted": False,
                "sender": alice_name,
                "participants": [alice_name],
                "body": "hello bob",
            }

        # "Sent by you": bob's laptop sends, his phone gets SENT_COPY, the laptop gets none.
        opcode, body = laptop.call(SEND, varint(1) + string(alice_name) + b"hi alice")
        reply_id = body.varint()
        copy = message(phone.push(SENT_COPY))
        assert (copy["id"], copy["sender"], copy["participants"], copy["body"]) == (
            reply_id,
            bob_name,
            [alice_name],
            "hi alice",
        )
        alice.push(DELIVER)

        # LIST_CONVERSATIONS: the conversation with its last message and unread count.
        opcode, body = laptop.call(LIST_CONVERSATIONS, varint(0) + varint(0))
        assert (opcode, body.u8(), body.varint()) == (CONVERSATIONS, 0, 1)
        row = [body.varint(), body.varint(), body.varint(), body.strings(), body.strings()]
        assert row == [conversation, 1, 0, [alice_name], []]
        last_id, last_at = body.varint(), body.varint()  # the last message
        assert (last_id, body.u8(), body.string(), body.string()) == (
            reply_id,
            0,
            bob_name,
            "hi alice",
        )
        assert last_at >= sent_at
        body.done()

        # READ_HISTORY by name, one message a page, newest first, then by id with the cursor.
        request = varint(0) + varint(0) + varint(1) + varint(1) + string(alice_name)
        opcode, body = laptop.call(READ_HISTORY, request)
        page = history(body)
        assert opcode == HISTORY and page["conversation"] == conversation and page["more"] == 1
        assert [m[4] for m in page["messages"]] == ["hi alice"]  # type: ignore[attr-defined]
        request = varint(conversation) + varint(reply_id) + varint(0) + varint(0)
        opcode, body = laptop.call(READ_HISTORY, request)
        page = history(body)
        assert page["more"] == 0 and page["participants"] == [alice_name]
        assert page["messages"] == [(first_id, sent_at, alice_name, False, "hello bob")]

        # MARK_READ: MARKED_READ here, READ_MARK on the phone (section 7.16).
        opcode, body = laptop.call(MARK_READ, varint(conversation) + varint(first_id))
        assert (opcode, body.varint(), body.varint(), body.varint()) == (
            MARKED_READ,
            conversation,
            first_id,
            0,
        )
        mark = phone.push(READ_MARK)
        assert (mark.varint(), mark.varint(), mark.varint()) == (conversation, first_id, 0)

        # DELETE_MESSAGES for everyone: only the sender may; REMOVED, then MESSAGES_GONE.
        opcode, body = laptop.call(DELETE_MESSAGES, b"\x01" + id_list([first_id]))
        assert (opcode, body.u8()) == (ERROR, FORBIDDEN)
        opcode, body = alice.call(DELETE_MESSAGES, b"\x01" + id_list([first_id]))
        assert opcode == REMOVED
        body.done()
        for device in (alice, laptop, phone):
            assert read_id_list(device.push(MESSAGES_GONE)) == [first_id]

        # The version 1 device saw exactly version 1: the DELIVER in its v1 layout, then nothing
        # of the copies, marks and deletions until the answer to its PING.
        frames = []
        old.write(PING, 1, b"?")
        while True:
            opcode, request_id, body = old.read()
            if opcode == PONG:
                break
            frames.append((opcode, request_id, body))
        assert len(frames) == 1
        opcode, request_id, body = frames[0]
        assert (opcode, request_id) == (DELIVER, 0)
        assert (body.varint(), body.varint(), body.string()) == (first_id, sent_at, alice_name)
        assert body.rest() == b"hello bob"
        # ... and a version 2 opcode is not a version 1 message: UNKNOWN_OPCODE, close.
        old.write(LIST_CONVERSATIONS, 1, varint(0) + varint(0))
        opcode, request_id, body = old.read()
        assert (opcode, request_id, body.u8()) == (ERROR, 0, UNKNOWN_OPCODE)
        body.rest()
        old.expect_close()
    finally:
        for client in (alice, laptop, phone, old):
            client.close()


def test_login_with_invalid_utf8_gets_invalid_utf8_in_our_words(address: tuple[str, int]) -> None:
    client = SpecClient(address)
    try:
        client.hello()
        client.write(LOGIN, 1, b"\x02\xc3\x28" + string("pw"))
        opcode, request_id, body = client.read()
        code, text = body.u8(), body.rest().decode()
        assert (opcode, request_id, code) == (
            ERROR,
            0,
            INVALID_UTF8,
        )  # section 6.3, not AUTH_FAILED
        assert "not well-formed UTF-8" in text and "codec" not in text and "'utf-8'" not in text
        client.expect_close()
    finally:
        client.close()


def test_requests_pipelined_behind_delete_account_are_discarded(
    address: tuple[str, int], users: tuple[str, str]
) -> None:
    name, _ = users
    client, _answer = version_3(address, SIGNUP, credentials(name))  # (deletion needs 3)
    try:
        inner = bytes([DELETE_ACCOUNT]) + varint(1) + credentials(name)
        ping = bytes([PING]) + varint(2) + b"after"
        client.sock.sendall(varint(len(inner)) + inner + varint(len(ping)) + ping)
        opcode, request_id, _body = client.read()
        assert (opcode, request_id) == (DELETED, 1)
        client.expect_close()  # no PONG: the PING behind DELETE_ACCOUNT was discarded
    finally:
        client.close()


def test_pending_counts_a_message_pushed_but_unacked_on_another_live_device(
    address: tuple[str, int], users: tuple[str, str]
) -> None:
    alice_name, bob_name = users
    alice, device, later = SpecClient(address), SpecClient(address), SpecClient(address)
    try:
        alice.hello()
        assert alice.call(SIGNUP, credentials(alice_name))[0] == SIGNED_UP
        device.hello()
        assert device.call(SIGNUP, credentials(bob_name))[0] == SIGNED_UP
        assert alice.call(SEND, varint(1) + string(bob_name) + b"unacked")[0] == SENT
        assert device.read()[0] == DELIVER  # pushed, never acked; the device stays connected
        later.hello()
        opcode, body = later.call(LOGIN, credentials(bob_name))
        assert (opcode, body.varint()) == (0x83, 1)  # section 7.3
        assert later.read()[0] == DELIVER
    finally:
        for client in (alice, device, later):
            client.close()


def test_account_deleted_elsewhere_reaches_a_version_2_device(
    address: tuple[str, int], users: tuple[str, str]
) -> None:
    name, _ = users
    first, second = SpecClientV2(address), SpecClientV2(address)
    try:
        first.hello()
        assert first.call(SIGNUP, credentials(name))[0] == SIGNED_UP
        second.hello()
        assert second.call(LOGIN, credentials(name))[0] == 0x83
        delete_with_password(address, name)  # (from a version 3 connection, section 6.8)
        for device in (first, second):
            opcode, request_id, body = device.read()
            assert (opcode, request_id, body.u8()) == (ERROR, 0, ACCOUNT_DELETED)
            body.rest()
            device.expect_close()
    finally:
        first.close()
        second.close()


def test_a_version_1_client_that_names_only_version_1_keeps_working(
    address: tuple[str, int],
) -> None:
    sock = socket.create_connection(address, timeout=5)
    try:
        sock.sendall(bytes.fromhex("06 01 00 57 43 01 01"))  # section 5's HELLO, byte for byte
        assert sock.recv(64) == bytes.fromhex("0b 81 00 01 80 80 06 80 80 04 80 02")
    finally:
        sock.close()
