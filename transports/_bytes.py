"""What every transport's byte counter shares: the four categories and the counting base.

Each wire transport keeps a byte counter beside it (``transports/<name>/_bytes.py``), named by
its registry entry's ``wire_account`` (``registry.WireAccount`` is the interface). The bench
feeds it one direction of one connection, in order and in any chunking, and reads back how
many bytes were

    payload  the encoded message itself (positional fields, protobuf bytes, JSON text),
    framing  what carries one message: length prefixes, opcodes, request ids, frame headers,
    headers  metadata sent beside the message (HTTP/2 HEADERS: HPACK-compressed headers),
    control  whole frames that carry no message: handshakes, flow control, pings, closes.

Counters classify whole frames only: ``pending`` is the bytes of a frame not yet complete, so
a quiet connection with ``pending == 0`` can be cut between two operations honestly.

``TIMER_KINDS`` names the frame kinds a transport's runtime writes on a timer rather than
because of a call (gRPC's BDP and keepalive PINGs and their ACKs, WebSocket keepalive
pings): the bench keeps calls disturbed by them out of its headline figures and reports
them per second and amortized per call instead (bench/wire.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

PAYLOAD, FRAMING, HEADERS, CONTROL = "payload", "framing", "headers", "control"
CATEGORIES = (PAYLOAD, FRAMING, HEADERS, CONTROL)


def varint_class(value: int) -> tuple[int, int]:
    """The integers whose (LEB128/protobuf) varint is as long as ``value``'s: (low, high)."""
    size = max(1, (value.bit_length() + 6) // 7)
    return (0 if size == 1 else 1 << (7 * (size - 1))), (1 << (7 * size)) - 1


def decimal_class(value: int) -> tuple[int, int]:
    """The non-negative integers with as many decimal digits as ``value``: (low, high)."""
    digits = len(str(value))
    return (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1


class ByteAccount:
    """Totals by category and by frame kind for one direction of one connection.

    Subclasses implement ``receive_data`` and ``pending`` and call ``count``. ``epoch`` is
    the number of the operation in progress (set by the bench); ``moved`` lists frames counted
    now that an earlier operation caused (gRPC flow control; the bench empties it).
    ``last_ids`` holds the latest request id / message id the counter saw on the wire, for
    the bench's "figure holds for ids ..." note; ``id_class`` says which ids encode in as many
    bytes (varints by default).
    """

    TIMER_KINDS: ClassVar[frozenset[str]] = frozenset()
    #: Flow-control frame kinds: each call carries a fixed number of them, and any beyond that
    #: over a long window is timer-driven too (gRPC's WINDOW_UPDATEs; see bench/wire.py).
    FLOW_KINDS: ClassVar[frozenset[str]] = frozenset()
    id_class = staticmethod(varint_class)

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter(dict.fromkeys(CATEGORIES, 0))
        self.by_kind: Counter[str] = Counter()
        self.frames: Counter[str] = Counter()
        self.epoch = 0
        self.moved: list[Any] = []
        self.last_ids: dict[str, int] = {}

    @property
    def parsed(self) -> int:
        """Bytes of whole frames counted so far (``parsed + pending`` = bytes fed)."""
        return sum(self.totals.values())

    def count(self, kind: str, parts: dict[str, int]) -> None:
        """Count one whole frame of ``kind``, split into categories by ``parts``."""
        for category, size in parts.items():
            self.totals[category] += size
        self.by_kind[kind] += sum(parts.values())
        self.frames[kind] += 1


__all__ = [
    "CATEGORIES",
    "CONTROL",
    "FRAMING",
    "HEADERS",
    "PAYLOAD",
    "ByteAccount",
    "decimal_class",
    "varint_class",
]
