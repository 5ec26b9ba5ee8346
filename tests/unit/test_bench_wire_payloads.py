"""Message sizes: the custom codec's body against protobuf, and the bench's message bodies."""

from __future__ import annotations

import pytest

from bench.config import QUICK_SIZES, SIZES
from bench.payloads import make_body, payload_sizes, username


@pytest.mark.parametrize("size", [*range(1, 70), *SIZES])
def test_bodies_have_exactly_the_requested_utf8_size(size: int) -> None:
    assert len(make_body(size, "ascii").encode()) == size
    assert make_body(size, "ascii").isascii()
    if size >= 2:
        body = make_body(size, "utf8")
        assert len(body.encode()) == size
        # "non-ASCII" means it: at most one filler letter in a body of multibyte characters
        assert sum(ch.isascii() for ch in body) <= 1


def test_a_one_byte_body_cannot_be_non_ascii() -> None:
    with pytest.raises(ValueError):
        make_body(1, "utf8")


def test_usernames_are_twelve_characters() -> None:
    assert username("abcdef", "r", 7) == "wcabcdefr007"
    with pytest.raises(ValueError):
        username("abc", "r", 7)


def by_key(rows):
    return {
        (r["op"], r["direction"], r["body_bytes"], r["recipients"], r["text"], r["note"]): r
        for r in rows
    }


def test_known_sizes_of_both_encodings() -> None:
    rows = by_key(payload_sizes(QUICK_SIZES))
    send = rows[("send", "c2s", 32, 1, "ascii", None)]
    # protobuf: tag + length + 12-byte name, tag + length + 32-byte body
    assert send["protobuf_bytes"] == (2 + 12) + (2 + 32)
    assert send["grpc_message_bytes"] == send["protobuf_bytes"] + 5
    # custom: count + (length + name) + the body as the rest of the frame (no length)
    assert send["custom_bytes"] == 1 + (1 + 12) + 32
    assert send["custom_frame_bytes"] == send["custom_bytes"] + 3  # length, opcode, request id
    assert send["text_bytes"] == 44
    assert rows[("logout", "c2s", None, None, None, None)]["protobuf_bytes"] == 0
    assert rows[("ack", "s2c", None, None, None, None)]["custom_message"] is None  # no reply
    assert rows[("login", "c2s", None, None, None, "Subscribe")]["custom_bytes"] is None


def test_non_ascii_costs_the_same_as_ascii_of_the_same_byte_size() -> None:
    rows = by_key(payload_sizes(sizes=(32, 1024)))
    for op, direction in (("send", "c2s"), ("deliver", "s2c")):
        for size in (32, 1024):
            ascii_row = rows[(op, direction, size, 1, "ascii", None)]
            utf8_row = rows[(op, direction, size, 1, "utf8", None)]
            for key in ("custom_bytes", "protobuf_bytes", "text_bytes"):
                assert ascii_row[key] == utf8_row[key]


def test_the_custom_envelope_grows_with_the_length_varint() -> None:
    # length varint (1 byte below 128, 2 below 16384, 3 above) + opcode + request id 1
    rows = by_key(payload_sizes(sizes=(1, 1024, 65536)))
    envelope = {
        size: rows[("send", "c2s", size, 1, "ascii", None)]["custom_frame_bytes"]
        - rows[("send", "c2s", size, 1, "ascii", None)]["custom_bytes"]
        for size in (1, 1024, 65536)
    }
    assert envelope == {1: 3, 1024: 4, 65536: 5}


def test_rows_cover_every_op_of_the_wire_scenario() -> None:
    ops = {row["op"] for row in payload_sizes(QUICK_SIZES)}
    assert ops == {
        "signup",
        "login",
        "list_accounts",
        "send",
        "deliver",
        "ack",
        "logout",
        "delete_account",
    }
    full = payload_sizes()
    sends = {(r["body_bytes"], r["recipients"]) for r in full if r["op"] == "send"}
    assert {(size, 1) for size in SIZES} <= sends
    assert {(32, 10), (32, 100)} <= sends
