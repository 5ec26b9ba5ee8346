"""Calls and rows of the wire bench: a call's own bytes, and the row built from its calls.

``bench/wire.py`` measures; this module builds a row from the calls it recorded on each
connection (``make_row``): the headline is each call's own frames (``call_bytes``: every byte
the connection carried during the call less the connection's frames, ``CONNECTION_KINDS``),
which is the same for every call of a steady row; and the amortized window's row
(``amortized_row``). Its module docstring defines the row keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.wire_relay import C2S, DIRECTIONS, Count, CountingRelay
from core.client import ChatClient
from transports._bytes import CATEGORIES, CONTROL, varint_class

Sample = dict[str, Count]  # direction -> bytes of one call
#: Ops whose size depends on the message id (a varint, or decimal digits in JSON): for the
#: history ops, the newest id of the conversation, or the id deleted.
MESSAGE_ID_OPS = frozenset(
    {"send", "deliver", "ack", "read_history", "mark_read", "list_conversations", "delete_messages"}
)


@dataclass(eq=False)
class Conn:
    """A measured client, its relay, and where its operations' bytes went."""

    relay: CountingRelay
    client: ChatClient
    mark: dict[str, Count] = field(default_factory=dict)  # counts when the last op settled
    last: Sample | None = None  # the last operation's sample, which takes the gap after it
    by_epoch: dict[int, Sample] = field(default_factory=dict)
    epochs: list[int] = field(default_factory=list)  # operation order on this connection
    closed: bool = False

    def request_id(self) -> int | None:
        """The request id the client last sent since ``forget_ids`` (if its wire has ids)."""
        ids = [c.accounts[C2S].last_ids.get("request") for c in self.relay.connections]
        return next((i for i in reversed(ids) if i is not None), None)

    def forget_ids(self) -> None:
        for connection in self.relay.connections:
            connection.accounts[C2S].last_ids.clear()


@dataclass(eq=False)
class Call:
    """One measured call: its connection, its epoch, and the ids its size may depend on."""

    conn: Conn
    epoch: int
    message_id: int | None = None
    request_id: int | None = None

    @property
    def sample(self) -> Sample:
        return self.conn.by_epoch[self.epoch]


#: Operations that are the connection's own set-up: their figures keep every frame (a gRPC
#: connect's SETTINGS, their ACKs and the initial WINDOW_UPDATE are what ``connect()``
#: causes, every time). ``close`` is not one: a WINDOW_UPDATE owed may or may not be flushed
#: with the last frames, so it is left out there as anywhere.
CONNECTION_OPS = frozenset({"connect"})


def connection_frames(count: Count, kinds: Iterable[str]) -> Count:
    """The part of ``count`` that is frames of ``kinds`` (the connection's frames)."""
    kinds = [kind for kind in kinds if count.kinds.get(kind)]
    size = sum(count.kinds[kind] for kind in kinds)
    return Count(
        size,
        {c: size if c == CONTROL else 0 for c in CATEGORIES},
        {kind: count.kinds[kind] for kind in kinds},
    )


def call_bytes(count: Count, kinds: Iterable[str]) -> Count:
    """``count`` less its frames of ``kinds``: the call's own frames (every kind in ``kinds``
    is counted as control by the transport's counter)."""
    return count - connection_frames(count, kinds)


def median_index(counts: Sequence[Count]) -> int:
    """Index of the call with the median byte count (the lower middle one if even)."""
    ordered = sorted(range(len(counts)), key=lambda i: counts[i].bytes)
    return ordered[(len(ordered) - 1) // 2]


def median_call(counts: Sequence[Count]) -> Count:
    """The call with the median byte count (the lower middle one for an even number)."""
    return counts[median_index(counts)]


def id_note(label: str, values: Iterable[int | None], id_class: Any) -> str | None:
    """'message ids 128..16383' for the ids measured (None if none), or several ranges."""
    ranges = sorted({id_class(v) for v in values if v is not None})
    if not ranges:
        return None
    return f"{label} ids " + ", ".join(f"{lo}..{hi}" for lo, hi in ranges)


@dataclass
class Window:
    """The raw counts of one connection over the amortized window (``bench/wire.py``)."""

    op: str
    conn: Conn
    counts: Sample
    calls: int
    seconds: float
    message_ids: tuple[int, int]


def amortized_row(
    transport: str, window: Window, connection_kinds: frozenset[str], body_bytes: int
) -> dict[str, Any]:
    """The connection's own frames over the window (``bench/wire.py``'s docstring)."""
    calls = window.calls
    row: dict[str, Any] = {
        "transport": transport,
        "op": window.op,
        "phase": "amortized",
        "body_bytes": body_bytes,
        "recipients": 1,
        "text": "ascii",
        "calls": calls,
        "seconds": round(window.seconds, 3),
    }
    total = 0
    for d in DIRECTIONS:
        count = window.counts[d]
        row[f"{d}_bytes"] = round(count.bytes / calls, 1)
        for category in CATEGORIES:
            row[f"{d}_{category}"] = round(count.categories[category] / calls, 1)
        detail = {k: v for k, v in count.kinds.items() if k in connection_kinds}
        own = sum(detail.values())
        row[f"{d}_connection_bytes"] = round(own / calls, 2)
        row[f"{d}_detail"] = dict(sorted(detail.items()))
        total += own
    row["control_bytes"] = total
    row["control_bytes_per_call"] = round(total / calls, 3)
    row["control_bytes_per_s"] = round(total / window.seconds, 1)
    lo, hi = window.message_ids
    row["holds_for"] = f"message ids {lo}..{hi} ({calls} calls back to back)"
    return row


def make_row(
    transport: str,
    op: str,
    phase: str,
    calls: Sequence[Call],
    *,
    connection_kinds: frozenset[str] = frozenset(),
    id_class: Any = varint_class,
    body_bytes: int | None = None,
    recipients: int | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """One first/steady row from its calls: each call's own frames, the median call's figures
    (every call's, for a deterministic protocol: ``*_range`` shows it)."""
    kinds = frozenset() if op in CONNECTION_OPS else connection_kinds
    samples = [{d: call_bytes(c.sample[d], kinds) for d in DIRECTIONS} for c in calls]
    extra = [{d: connection_frames(c.sample[d], kinds) for d in DIRECTIONS} for c in calls]
    row: dict[str, Any] = {
        "transport": transport,
        "op": op,
        "phase": phase,
        "body_bytes": body_bytes,
        "recipients": recipients,
        "text": text,
    }
    picked = {d: median_index([s[d] for s in samples]) for d in DIRECTIONS}
    chosen = {d: samples[picked[d]][d] for d in DIRECTIONS}
    basis = [calls[i] for i in dict.fromkeys(picked.values())]  # the calls the figures are
    for d in DIRECTIONS:
        row[f"{d}_bytes"] = chosen[d].bytes
    for d in DIRECTIONS:
        for category in CATEGORIES:
            row[f"{d}_{category}"] = chosen[d].categories[category]
    row["samples"] = len(calls)
    # Calls during which the connection carried frames of its own (not in the figures).
    row["with_connection_frames"] = sum(any(e[d].bytes for d in DIRECTIONS) for e in extra)
    for d in DIRECTIONS:
        sizes = [s[d].bytes for s in samples]
        row[f"{d}_mean"] = round(sum(sizes) / len(sizes), 1)
        row[f"{d}_range"] = [min(sizes), max(sizes)]
        # The connection's frames that crossed during the calls, per call: they depend on
        # call spacing and run length, so they are never a headline (see the amortized rows).
        row[f"{d}_connection_mean"] = round(sum(e[d].bytes for e in extra) / len(extra), 1)
        row[f"{d}_mean_all"] = round(sum(c.sample[d].bytes for c in calls) / len(calls), 1)
        row[f"{d}_detail"] = dict(sorted(chosen[d].kinds.items()))
    notes = []
    if op in MESSAGE_ID_OPS:
        notes.append(id_note("message", (c.message_id for c in basis), id_class))
    if op != "deliver":
        notes.append(id_note("request", (c.request_id for c in basis), id_class))
    row["holds_for"] = "; ".join(n for n in notes if n) or None
    return row


__all__ = [
    "CONNECTION_OPS",
    "MESSAGE_ID_OPS",
    "Call",
    "Conn",
    "Sample",
    "Window",
    "amortized_row",
    "call_bytes",
    "connection_frames",
    "id_note",
    "make_row",
    "median_call",
    "median_index",
]
