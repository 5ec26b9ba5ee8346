"""Version 3 of the custom protocol in the sans-IO codec (account security): negotiation, the
new frames both ways, the grown layouts of SIGNED_UP, LOGGED_IN and DELETE_ACCOUNT, and that a
version 1 or 2 connection is byte for byte what it was. (PROTOCOL.md's examples of each frame
are checked by test_protocol_doc.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from transports.custom import (
    Connection,
    DeleteAccount,
    ErrorCode,
    Hello,
    LocalProtocolError,
    LoggedIn,
    ProtocolError,
    Role,
    SignedUp,
    Welcome,
)
from transports.custom._events import NEED_DATA
from transports.custom._security import ChangePassword, PasswordChanged, Resume
from transports.custom._wire import MAX_FRAME, Opcode

TOKEN = "q2Lb3f9XoS1w6Vt0mZkUu8eYc5RhJpN4aGdTxB7iCsE"


def pair(versions: tuple[int, int]) -> tuple[Connection, Connection]:
    """(client, server) after HELLO offering ``versions`` and the server's WELCOME."""
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    server.receive_data(client.send(Hello(*versions)))
    server.next_event()
    assert server.version is not None
    client.receive_data(server.send(Welcome(server.version, MAX_FRAME, 65536, 256)))
    client.next_event()
    return client, server


def roundtrip(versions: tuple[int, int], direction: str, event: Any) -> list[Any]:
    """Send ``event`` on a fresh pair and decode it fed whole, one byte at a time, and with the
    start of a next frame behind it; the three must agree."""
    seen = []
    for how in ("whole", "bytewise", "trailing"):
        client, server = pair(versions)
        sender, receiver = (client, server) if direction == "c2s" else (server, client)
        data = sender.send(event)
        if how == "bytewise":
            chunks = [data[i : i + 1] for i in range(len(data))]
        else:
            chunks = [data + b"\x05\x09" if how == "trailing" else data]
        events = []
        for chunk in chunks:
            receiver.receive_data(chunk)
            while (got := receiver.next_event()) is not NEED_DATA:
                events.append(got)
        seen.append(events)
    assert seen[0] == seen[1] == seen[2]
    return seen[0]


def test_a_client_offering_1_to_3_gets_3_and_one_offering_1_to_2_gets_2() -> None:
    assert pair((1, 3))[1].version == 3
    assert pair((1, 2))[1].version == 2


@pytest.mark.parametrize(
    ("direction", "event"),
    [
        ("c2s", Resume(1, TOKEN)),
        ("c2s", ChangePassword(2, "correct horse", "battery staple 9", True)),
        ("c2s", ChangePassword(3, "é" * 200, "ü" * 100, False)),
        ("c2s", DeleteAccount(4, "alice", "correct horse")),
        ("s2c", PasswordChanged(2, TOKEN, 1)),
        ("s2c", SignedUp(1, 0, TOKEN)),
        ("s2c", LoggedIn(1, 3, TOKEN, "bob")),
        ("s2c", LoggedIn(300, 70_000, "", "")),
    ],
)
def test_version_3_frames_go_both_ways(direction: str, event: Any) -> None:
    assert roundtrip((1, 3), direction, event) == [event]


@pytest.mark.parametrize("versions", [(1, 1), (1, 2)])
def test_older_connections_keep_their_layouts_and_refuse_version_3_frames(versions) -> None:
    client, server = pair(versions)
    # The version 3 fields are not on the wire of an older connection (section 7.3's bytes).
    assert server.send(LoggedIn(1, 3, TOKEN, "bob")) == bytes.fromhex("03 83 01 03")
    assert server.send(SignedUp(1, 0, TOKEN)) == bytes.fromhex("03 82 01 00")
    assert client.send(DeleteAccount(4, "alice", "secret")) == bytes.fromhex(
        "08 08 04 05 61 6c 69 63 65"
    )
    [decoded] = roundtrip(versions, "c2s", DeleteAccount(4, "alice", "secret"))
    assert decoded == DeleteAccount(4, "alice", "")  # no password field to read
    with pytest.raises(LocalProtocolError) as local:
        client.send(Resume(1, TOKEN))
    assert local.value.code is ErrorCode.UNKNOWN_OPCODE
    with pytest.raises(ProtocolError) as remote:
        server.receive_data(bytes([4, Opcode.CHANGE_PASSWORD, 1, 0, 0]))
        server.next_event()
    assert remote.value.code is ErrorCode.UNKNOWN_OPCODE


@pytest.mark.parametrize("flags", [0x02, 0x80, 0xFF])
def test_reserved_change_password_flags_are_malformed(flags: int) -> None:
    _, server = pair((1, 3))
    body = bytes([Opcode.CHANGE_PASSWORD, 1, 1, 0x61, 1, 0x62, flags])
    server.receive_data(bytes([len(body)]) + body)
    with pytest.raises(ProtocolError) as refused:
        server.next_event()
    assert refused.value.code is ErrorCode.MALFORMED


def test_a_truncated_resume_token_is_malformed() -> None:
    _, server = pair((1, 3))
    body = bytes([Opcode.RESUME, 1, 43]) + TOKEN[:10].encode()
    server.receive_data(bytes([len(body)]) + body)
    with pytest.raises(ProtocolError) as refused:
        server.next_event()
    assert refused.value.code is ErrorCode.MALFORMED
