"""SENT (version 2 and later): the server's encoder, written out for the hot path with the
kept high bytes of the last message id and timestamp (transports/custom/_history.py,
``_enc_sent_v2``), writes the bytes of the plain field-by-field layout (PROTOCOL.md: request
id, message id, sent_at_ms, conversation id, unknown recipients), whatever order the values
come in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from transports.custom._events import Sent
from transports.custom._fields import _put_strs
from transports.custom._history import _enc_sent_v2
from transports.custom._wire import U32_MAX, U64_MAX, put_varint

_NAMES = st.text(alphabet="abcdefghij_.-0123", min_size=1, max_size=8)
_SENT = st.builds(
    Sent,
    st.integers(min_value=1, max_value=U32_MAX),
    st.integers(min_value=0, max_value=U64_MAX),
    st.integers(min_value=0, max_value=U64_MAX),
    st.lists(_NAMES, max_size=3).map(tuple),
    st.integers(min_value=0, max_value=U64_MAX),
)


def _plain(sent: Sent) -> bytes:
    out = bytearray()
    for value in (sent.request_id, sent.message_id, sent.sent_at_ms, sent.conversation_id):
        put_varint(out, value)
    _put_strs(out, sent.unknown_recipients)
    return bytes(out)


def _encoded(sent: Sent) -> bytes:
    out = bytearray()
    _enc_sent_v2(sent, out)
    return bytes(out)


@given(st.lists(_SENT, min_size=1, max_size=20))
def test_any_replies_in_any_order(replies: list[Sent]) -> None:
    for sent in replies:
        assert _encoded(sent) == _plain(sent)


def test_a_run_of_replies_across_many_high_parts_of_the_ids_and_the_clock() -> None:
    start_ms = 1_764_380_000_000
    for i in range(600):
        sent = Sent(1 + i % 200, 100 + i, start_ms + 3 * i, ("gone",) if i % 7 == 0 else (), 5)
        assert _encoded(sent) == _plain(sent)
