"""SEND's encoder keeps the bytes of the last recipients it wrote (issue 8: the client's CPU
per send) and still writes exactly the field writers' bytes, and refuses exactly what they
refuse (same code, same words), for any sequence of sends: the same names again, other names,
refused sends in between.

``_reference`` is SEND's encoder as it was before the names were kept.
"""

from __future__ import annotations

import random

import pytest

from transports.custom import _messages
from transports.custom._events import Send
from transports.custom._fields import _put_rid, _put_strs, _refuse, _utf8
from transports.custom._wire import MAX_RECIPIENTS, U32_MAX, LocalProtocolError


def _reference(e: Send, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    if not 1 <= len(e.recipients) <= MAX_RECIPIENTS:
        raise _refuse(f"SEND names 1..{MAX_RECIPIENTS} recipients")
    _put_strs(out, e.recipients)
    out += _utf8(e.body)


def _write(encode: object, event: Send) -> object:
    out = bytearray(b"\x42")  # (the codec's opcode byte comes first)
    try:
        encode(event, out)  # type: ignore[operator]
    except LocalProtocolError as exc:
        return ("refused", exc.code, str(exc))
    return bytes(out)


@pytest.fixture(autouse=True)
def _nothing_kept() -> None:
    _messages._last_recipients = (None, b"")


RIDS = (1, 2, 127, 128, 300, U32_MAX, 0, -1, U32_MAX + 1)
GROUPS: list[tuple[str, ...]] = [
    (),
    ("bob",),
    ("é" * 70,),
    ("n" * 127,),
    ("n" * 128,),
    ("",),
    ("bad\ud800",),
    ("bob", "alice"),
    ("alice", "bob"),
    ("bob", "bad\ud800"),
    tuple(f"u{i}" for i in range(MAX_RECIPIENTS)),
    tuple(f"u{i}" for i in range(MAX_RECIPIENTS + 1)),
]
BODIES = ("", "x" * 32, "ü" * 200, "b" * 5000, "lone \udfff")


def test_the_same_names_again_are_written_as_the_field_writers_write_them() -> None:
    for recipients in GROUPS:
        for rid in RIDS:  # the first write keeps the names (or not: refused), then again
            for body in BODIES:
                event = Send(rid, recipients, body)
                assert _write(_messages._enc_send, event) == _write(_reference, event), event


def test_any_sequence_of_sends_is_written_as_the_field_writers_write_it() -> None:
    rng = random.Random(8)
    for _ in range(20_000):
        event = Send(rng.choice(RIDS), rng.choice(GROUPS), rng.choice(BODIES))
        assert _write(_messages._enc_send, event) == _write(_reference, event), event
