"""Calls and rows of the wire bench: which calls a row's figures come from, and the row.

``bench/wire.py`` measures; this module decides, from the calls it recorded on each
connection, which ones a timer-driven frame came near (``disturbed``) and builds a row from
the others (``make_row``). Its module docstring defines both.
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
    moves: list[tuple[int, int]] = field(default_factory=list)  # (from epoch, to epoch)
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


def has_timer_frames(sample: Sample, timer_kinds: Iterable[str]) -> bool:
    kinds = tuple(timer_kinds)
    return any(sample[d].kinds.get(kind) for d in DIRECTIONS for kind in kinds)


def disturbed(call: Call, timer_kinds: frozenset[str]) -> bool | None:
    """Whether a timer-driven frame may have changed this call's bytes (see the module
    docstring); None while that can still change: until two more operations of its connection
    have completed (the gap after the call, and credit for its DATA written in the next call,
    are known by then) or the connection is closed."""
    conn = call.conn
    index = conn.epochs.index(call.epoch)
    if index + 2 >= len(conn.epochs) and not conn.closed:
        return None
    around = conn.epochs[max(0, index - 1) : index + 1]
    if any(has_timer_frames(conn.by_epoch[e], timer_kinds) for e in around):
        return True
    return any(
        target == call.epoch and has_timer_frames(conn.by_epoch[source], timer_kinds)
        for source, target in conn.moves
        if source in conn.by_epoch
    )


def without(count: Count, kinds: Iterable[str]) -> Count:
    """``count`` less its frames of ``kinds`` (control frames): a disturbed call's own frames."""
    size = sum(count.kinds.get(kind, 0) for kind in kinds)
    if not size:
        return count
    timer = Count(
        size,
        {c: size if c == CONTROL else 0 for c in CATEGORIES},
        {kind: count.kinds[kind] for kind in kinds if count.kinds.get(kind)},
    )
    return count - timer


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


def make_row(
    transport: str,
    op: str,
    phase: str,
    calls: Sequence[Call],
    *,
    timer_kinds: frozenset[str] = frozenset(),
    id_class: Any = varint_class,
    body_bytes: int | None = None,
    recipients: int | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """One first/steady row from its calls: figures from the undisturbed ones."""
    clean = [c for c in calls if not disturbed(c, timer_kinds)]
    used = clean or list(calls)  # none undisturbed: say so (samples 0), show them all
    samples = [{d: without(c.sample[d], timer_kinds) for d in DIRECTIONS} for c in used]
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
    basis = [used[i] for i in dict.fromkeys(picked.values())]  # the calls the figures are
    for d in DIRECTIONS:
        row[f"{d}_bytes"] = chosen[d].bytes
    for d in DIRECTIONS:
        for category in CATEGORIES:
            row[f"{d}_{category}"] = chosen[d].categories[category]
    row["samples"] = len(clean)
    row["disturbed"] = len(calls) - len(clean)
    for d in DIRECTIONS:
        sizes = [s[d].bytes for s in samples]
        every = [c.sample[d].bytes for c in calls]
        row[f"{d}_mean"] = round(sum(sizes) / len(sizes), 1)
        row[f"{d}_range"] = [min(sizes), max(sizes)]
        row[f"{d}_mean_all"] = round(sum(every) / len(every), 1)
        row[f"{d}_detail"] = dict(sorted(chosen[d].kinds.items()))
    notes = []
    if op in MESSAGE_ID_OPS:
        notes.append(id_note("message", (c.message_id for c in basis), id_class))
    if op != "deliver":
        notes.append(id_note("request", (c.request_id for c in basis), id_class))
    row["holds_for"] = "; ".join(n for n in notes if n) or None
    return row


__all__ = [
    "MESSAGE_ID_OPS",
    "Call",
    "Conn",
    "Sample",
    "disturbed",
    "has_timer_frames",
    "id_note",
    "make_row",
    "median_call",
    "median_index",
    "without",
]
