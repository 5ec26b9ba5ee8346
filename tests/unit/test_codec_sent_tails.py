"""SENT (version 2+) is read with the tails of the last varints kept (issue 8: the client's
CPU per send), and reads exactly what the field-by-field reader reads: the same Sent, the same
position after it, the same ProtocolError (code and words) for every malformed body, whatever
frames came before it.

``_reference`` is the field reader's SENT, as it was read before the tails were kept.
"""

from __future__ import annotations

import random

import pytest

from transports.custom import _history
from transports.custom._events import Sent
from transports.custom._fields import FrameReader
from transports.custom._wire import U64_MAX, ProtocolError, put_varint


def _reference(r: FrameReader, rid: int) -> Sent:
    message_id, sent_at, conversation_id = r.v64(), r.v64(), r.v64()
    unknown = r.v32()
    texts = r.texts(unknown) if unknown else ()
    return Sent(rid, message_id, sent_at, texts, conversation_id)


def _varint(value: int) -> bytes:
    out = bytearray()
    put_varint(out, value)
    return bytes(out)


def _body(
    message_id: int, sent_at: int, conversation_id: int, unknown: tuple[str, ...] = ()
) -> bytes:
    out = bytearray(_varint(message_id) + _varint(sent_at) + _varint(conversation_id))
    out += _varint(len(unknown))
    for name in unknown:
        data = name.encode()
        out += _varint(len(data)) + data
    return bytes(out)


def _read(decode: object, body: bytes, *, lead: bytes = b"", trail: bytes = b"") -> object:
    """What ``decode`` makes of ``body`` (inside a buffer holding more bytes around it, as the
    codec's does): (Sent, position after it) or (code, message) of the error."""
    buf = bytearray(lead + body + trail)
    r = FrameReader()
    r.reset(buf, len(lead), len(lead) + len(body))
    try:
        event = decode(r, 7)  # type: ignore[operator]
    except ProtocolError as exc:
        return ("error", exc.code, exc.message)
    return (event, r.pos - len(lead))


def _same(body: bytes, **around: bytes) -> None:
    assert _read(_history._dec_sent_v2, body, **around) == _read(_reference, body, **around)


@pytest.fixture(autouse=True)
def _fresh_tails() -> None:
    _history._sent_tails[:] = [(b"", 0)] * 3


def test_rising_replies_read_as_the_field_reader_reads_them() -> None:
    clock = 1_764_500_000_000
    for n in range(3000):
        _same(_body(100_000 + n, clock + 3 * n, 42 + n // 1000))


def test_a_kept_tail_is_not_read_past_the_end_of_the_frame() -> None:
    _same(_body(300, 1_764_500_000_000, 5))  # keeps the tails of 300 and of the clock
    body = _body(301, 1_764_500_000_001, 5)
    for cut in range(len(body)):  # every truncation: the same error, never the next frame's bytes
        _same(body[:cut], trail=body[cut:] + b"\x00" * 12)


def test_malformed_varints_after_kept_tails_fail_as_before() -> None:
    _same(_body(300, 1_764_500_000_000, 70_000))
    tail = _varint(1_764_500_000_000)[1:]
    bad = [
        b"\x80\x00" + _varint(1) + b"\x01\x00",  # message_id not minimal
        _varint(5) + b"\x80" + tail + b"\x01\x00",  # sent_at's known tail, first byte is fine
        _varint(5) + b"\xff" * 10 + b"\x01" + b"\x01\x00",  # longer than ten bytes
        _varint(5) + b"\xff" * 9 + b"\x7f" + b"\x01\x00",  # above 2^64-1
        _varint(5) + _varint(U64_MAX) + b"\x01\x00",  # 2^64-1 itself is fine
        _body(1, 2, 3) + b"\x00",  # a byte after the last field (the codec refuses it)
        _body(1, 2, 3)[:-1] + b"\x02\x01a",  # two unknown names, one present
        _body(1, 2, 3, ("ghost", "bob")),
        _body(1, 2, 3)[:-1] + b"\x01\x02\xc3\x28",  # not UTF-8
    ]
    for body in bad:
        _same(body)
        _same(body, lead=b"\x99\x88")


def test_random_bodies_read_as_the_field_reader_reads_them() -> None:
    rng = random.Random(8)
    base = [
        _body(rng.randrange(1 << 40), rng.randrange(1 << 44), rng.randrange(1 << 20))
        for _ in range(50)
    ]
    for _ in range(5000):
        body = bytearray(rng.choice(base))
        for _ in range(rng.randrange(3)):  # flip, cut or add a byte
            what = rng.randrange(3)
            if what == 0 and body:
                body[rng.randrange(len(body))] = rng.randrange(256)
            elif what == 1 and body:
                del body[rng.randrange(len(body)) :]
            else:
                body.insert(rng.randrange(len(body) + 1), rng.choice((0x00, 0x7F, 0x80, 0xFF)))
        _same(bytes(body), trail=bytes(rng.randrange(256) for _ in range(rng.randrange(12))))
