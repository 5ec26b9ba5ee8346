"""Fuzz target: protobuf-tcp's codec (the custom framing with protobuf bodies,
``transports.protobuf_tcp.Connection``).

The framing contract is the custom codec's (``_harness.check_framed``); the bodies are parsed
by the protobuf runtime, so this target also checks that no protobuf error (DecodeError, a
RuntimeWarning of a bad UTF-8 string, an enum out of range) escapes as anything but a
ProtocolError. Run: ``python fuzz/run.py protobuf_tcp_codec -runs=20000``, or ``make fuzz``.
"""

from __future__ import annotations

import _harness
from _framed import scenario_of, scenarios

from transports.protobuf_tcp import Connection, Role

SCENARIOS = scenarios(Connection, Role)


def test_one_input(data: bytes) -> None:
    """One fuzz input: scenario byte, chunk byte, the stream (``_harness``)."""
    scenario, chunk, stream = _harness.split(data, SCENARIOS)
    _harness.check_framed(scenario.make(), stream, chunk)


def seeds() -> list[bytes]:
    """Every hex example of protobuf-tcp's PROTOCOL.md, in the state it arrives in."""
    return _harness.framed_seeds("transports/protobuf_tcp/PROTOCOL.md", scenario_of)
