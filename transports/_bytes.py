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

``CONNECTION_KINDS`` names the frame kinds that belong to the connection, not to any call:
frames a runtime writes on a timer or by its own estimate, whose presence, timing and size
are not a function of the call (gRPC's PINGs, PING ACKs, WINDOW_UPDATEs and SETTINGS after
the handshake; WebSocket keepalive PING/PONG). They are never part of a call's headline
figure; the bench reports them in rows of their own, per second of connection and amortized
per call over a long window (bench/wire.py). ``TIMER_KINDS`` and ``FLOW_KINDS`` name the two
subsets (written on a timer; flow-control credit written by the runtime's estimate), for the
breakdown of those rows.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

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
    the number of the operation in progress (set by the bench). ``last_ids`` holds the latest
    request id / message id the counter saw on the wire, for the bench's "figure holds for
    ids ..." note; ``id_class`` says which ids encode in as many bytes (varints by default).
    """

    #: Frame kinds written on a timer (keepalive and BDP pings and their answers).
    TIMER_KINDS: ClassVar[frozenset[str]] = frozenset()
    #: Flow-control frame kinds (gRPC's WINDOW_UPDATEs, written by grpc-core's estimate).
    FLOW_KINDS: ClassVar[frozenset[str]] = frozenset()
    #: Every frame kind that is the connection's, never a call's (see the module docstring):
    #: TIMER_KINDS, FLOW_KINDS and any other such kind (gRPC's SETTINGS and SETTINGS ACK).
    CONNECTION_KINDS: ClassVar[frozenset[str]] = frozenset()
    id_class = staticmethod(varint_class)

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter(dict.fromkeys(CATEGORIES, 0))
        self.by_kind: Counter[str] = Counter()
        self.frames: Counter[str] = Counter()
        self.epoch = 0
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
