"""Fuzz target: the custom protocol's sans-IO codec (``transports.custom.Connection``).

Any stream, in any connection state, split anywhere, gives events or a ProtocolError with an
ErrorCode, never another exception, and never buffers more than one incomplete frame
(``_harness.check_framed``). Run: ``python fuzz/run.py custom_codec -runs=20000`` (atheris /
libFuzzer options), or ``make fuzz``.
"""

from __future__ import annotations

import _harness
from _framed import scenario_of, scenarios

from transports.custom import Connection, Role

SCENARIOS = scenarios(Connection, Role)


def test_one_input(data: bytes) -> None:
    """One fuzz input: scenario byte, chunk byte, the stream (``_harness``)."""
    scenario, chunk, stream = _harness.split(data, SCENARIOS)
    _harness.check_framed(scenario.make(), stream, chunk)


def seeds() -> list[bytes]:
    """Every hex example of PROTOCOL.md, in the state it arrives in."""
    return _harness.framed_seeds("transports/custom/PROTOCOL.md", scenario_of)
