"""RisingVarint (transports.custom._fields): the varints of SENT and DELIVER's ids and
timestamps, written from the bytes kept of the last value, are those of put_varint."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from transports.custom._fields import RisingVarint
from transports.custom._wire import U64_MAX, put_varint


def _plain(value: int) -> bytes:
    out = bytearray()
    put_varint(out, value)
    return bytes(out)


@given(st.lists(st.integers(min_value=0, max_value=U64_MAX), min_size=1, max_size=20))
def test_any_values_in_any_order(values: list[int]) -> None:
    rising = RisingVarint()
    for value in values:
        out = bytearray(b"\x07")
        rising.put(out, value)
        assert bytes(out) == b"\x07" + _plain(value)


def test_a_clock_across_many_of_its_high_parts() -> None:
    rising = RisingVarint()
    start = 1_764_380_000_000
    for value in range(start - 300, start + 300):
        out = bytearray()
        rising.put(out, value)
        assert bytes(out) == _plain(value)
