"""What the fuzz targets share: how an input is read, the framing contract, seeds, the runner.

Every target is one file in ``fuzz/`` with ``test_one_input(data: bytes) -> None`` (raises
AssertionError, or lets an unexpected exception escape, when the codec breaks its contract)
and ``seeds() -> list[bytes]`` (starting inputs, from the protocol documents' examples). The
same ``test_one_input`` runs under atheris (coverage-guided: ``fuzz/run.py``, ``make fuzz``)
and under hypothesis (``tests/unit/test_fuzz_targets.py`` replays the seeds and
drives it with ``fuzz_one_input``), so the two fuzzers check one contract.

An input for a framed codec (custom, protobuf-tcp) is ``scenario byte, chunk byte, stream``:
the scenario picks the connection state the stream arrives in (a fresh server, a server or
client after the handshake of each protocol version, a client that has only sent HELLO), the chunk
byte the size of the pieces the stream is fed in (0: whole), so framing across reads is
fuzzed too.

The contract of a framed codec (custom PROTOCOL.md section 3 and the codec's docstring):
  * ``next_event`` returns events, ``NEED_DATA`` or ``ConnectionClosed``, or raises
    ``ProtocolError`` whose ``code`` is an ``ErrorCode``; never any other exception;
  * once it raised, it raises again (the receiving direction is over);
  * memory is bounded: after the events are drained, at most one incomplete frame is
    buffered (its length was checked against ``max_frame`` before it was buffered).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transports.custom._events import NEED_DATA, ConnectionClosed
from transports.custom._wire import ErrorCode, ProtocolError

#: Bytes of the longest length prefix (a varint of a 32-bit length).
LENGTH_PREFIX_BYTES = 5
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Scenario:
    """A connection state a fuzzed stream arrives in."""

    name: str
    make: Callable[[], Any]  # -> a codec connection in that state


def split(data: bytes, scenarios: Sequence[Scenario]) -> tuple[Scenario, int, bytes]:
    """(scenario, chunk size or 0 for whole, the stream) of one fuzz input."""
    if len(data) < 2:
        return scenarios[0], 0, data
    return scenarios[data[0] % len(scenarios)], data[1], data[2:]


def check_framed(conn: Any, stream: bytes, chunk: int) -> list[object]:
    """Feed ``stream`` (in pieces of ``chunk`` bytes; 0: whole) then the end of the stream;
    assert the framing contract (module docstring); return the events."""
    pieces = [stream[i : i + chunk] for i in range(0, len(stream), chunk)] if chunk else [stream]
    events: list[object] = []
    fed = 0
    try:
        for piece in [p for p in pieces if p] + [b""]:
            conn.receive_data(piece)
            fed += len(piece)
            while (event := conn.next_event()) is not NEED_DATA:
                events.append(event)
                if isinstance(event, ConnectionClosed):
                    return events
            assert conn.buffered <= min(fed, conn.max_frame + LENGTH_PREFIX_BYTES), (
                f"{conn.buffered} bytes buffered after draining (fed {fed}, max_frame "
                f"{conn.max_frame}): more than one incomplete frame"
            )
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode), f"ProtocolError without an ErrorCode: {exc!r}"
        try:
            conn.next_event()
        except ProtocolError as again:
            assert again.code == exc.code, "the error changed"
        else:
            raise AssertionError("a ProtocolError was not final") from None
        return events
    raise AssertionError("the stream ended without ConnectionClosed or a ProtocolError")


# -- seeds from the protocol documents --------------------------------------------------------
_HEX_BLOCK = re.compile(r"^```hex (?P<info>[^\n]*)\n(?P<body>.*?)\n```$", re.M | re.S)
_JSON_BLOCK = re.compile(r"^```json (?P<info>[^\n]*)\n(?P<body>.*?)\n```$", re.M | re.S)


def hex_examples(doc: str) -> list[tuple[list[str], bytes]]:
    """(info words, bytes) of each ```` ```hex ```` block of a PROTOCOL.md (``;`` comments)."""
    text = (REPO / doc).read_text(encoding="utf-8")
    found = []
    for block in _HEX_BLOCK.finditer(text):
        digits = "".join(line.split(";", 1)[0] for line in block["body"].splitlines())
        found.append((block["info"].split(), bytes.fromhex(digits)))
    return found


def json_examples(doc: str) -> list[tuple[list[str], str]]:
    """(info words, text) of each ```` ```json ```` block of a CONTRACT.md."""
    text = (REPO / doc).read_text(encoding="utf-8")
    return [(b["info"].split(), b["body"]) for b in _JSON_BLOCK.finditer(text)]


def framed_seeds(doc: str, scenario_of: Callable[[list[str]], int]) -> list[bytes]:
    """A seed per hex example: the scenario it belongs to, chunk 0 (whole), its bytes; and
    the same split one byte at a time."""
    seeds = []
    for words, data in hex_examples(doc):
        scenario = scenario_of(words)
        seeds += [bytes((scenario, 0)) + data, bytes((scenario, 1)) + data]
    return seeds
