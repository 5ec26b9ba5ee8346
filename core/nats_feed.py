"""A node's feed of one user's events (core.nats_bus has the theory of operation): hands
them to the node's sessions in the user's sequence, holding what comes after a gap and
reading what is missing back from the database.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.store import LoggedNotice
from core.types import CloseReason, Delivery, MessagesDeleted, Notice

if TYPE_CHECKING:
    import nats.aio.subscription

    from core.nats_bus import NatsBus
    from core.session import Session

log = logging.getLogger("core.nats_bus")

#: Seconds a feed waits for a missing delivery before reading it from the database: reordered
#: publishes from two nodes arrive within a millisecond or two here; a real loss waits this.
GAP_GRACE = 0.02
#: Rows one repair query reads (a repair after a long outage pages on).
REPAIR_PAGE = 500
#: Pages one repair reads before it leaves the rest to the next sweep (bounds one pass).
REPAIR_PAGES = 20
#: Ids of recently deleted messages a feed remembers, so a delivery that arrives after its
#: deletion notice is not shown (a notice names at most limits.MAX_DELETE_IDS ids).
RECENTLY_GONE = 4096


@dataclass(frozen=True, slots=True)
class End:
    """How a feed carries "end every session of the user", in the user's sequence.
    ``here``: this node wrote it, and its service has ended its own sessions already (all
    but the one that changed the password, which must stay)."""

    reason: CloseReason
    here: bool


#: What a feed hands on, in seq order.
_Event = Delivery | Notice | End
#: (seq, prev, event, the session that caused it) as a feed holds it.
_Held = tuple[int, int, _Event, "Session | None"]


class Feed:
    """One watched user on this node: hands its events to the node's sessions in seq order,
    repairing gaps from the database (the theory: core.nats_bus)."""

    def __init__(self, bus: NatsBus, account_id: int) -> None:
        self.bus = bus
        self.account_id = account_id
        self.last_seq = 0  # every event up to this seq has been handed on (or repaired)
        self.last_id = 0  # the id of the newest delivery handed on (ids rise with seqs)
        self.ready = False  # the baseline is read
        self.closed = False
        self.held: list[_Held] = []  # events that wait for a repair (or the baseline)
        self.want = 0  # a sweep found last_seq this high: repair up to it
        self.repairing: asyncio.Task[None] | None = None
        self.opening: asyncio.Task[None] | None = None
        self.subscription: nats.aio.subscription.Subscription | None = None
        self.gone: deque[int] = deque(maxlen=RECENTLY_GONE)

    # -- events in --------------------------------------------------------------------------
    def offer(self, seq: int, prev: int, event: _Event, skip: Session | None) -> None:
        if self.closed:
            return
        if isinstance(event, MessagesDeleted):
            self.gone.extend(event.message_ids)
        if not self.ready or self.repairing is not None:
            self.held.append((seq, prev, event, skip))
            return
        if seq:
            if seq <= self.last_seq:
                return  # repaired already, or a duplicate
            if prev != self.last_seq:
                self.bus.stats.gaps += 1
                self.held.append((seq, prev, event, skip))
                self.repair(wait=GAP_GRACE)
                return
            self.last_seq = seq
        self._hand(event, skip)

    def repair(self, up_to: int = 0, wait: float = 0.0) -> None:
        """Fill every gap up to ``up_to`` (and up to what is held), in a task."""
        self.want = max(self.want, up_to)
        if self.repairing is None and not self.closed and self.ready:
            self.repairing = asyncio.get_running_loop().create_task(
                self._repair(wait), name=f"wirechat-bus-repair-{self.account_id}"
            )

    def close(self) -> None:
        self.closed = True
        self.held.clear()
        for task in (self.repairing, self.opening):
            if task is not None and not task.done():
                task.cancel()

    # -- internals ----------------------------------------------------------------------------
    def _hand(self, event: _Event, skip: Session | None) -> None:
        if self.closed:
            return
        if isinstance(event, End):
            if not event.here:
                self.bus.sink.end_local_sessions(self.account_id, event.reason)
            return
        if isinstance(event, Delivery):
            if event.message_id <= self.last_id or event.message_id in self.gone:
                return  # handed on by a repair already, or deleted before it arrived
            self.last_id = event.message_id
        elif isinstance(event, MessagesDeleted):
            self.gone.extend(event.message_ids)  # (one read back from the log)
        self.bus.sink.deliver(self.account_id, event, skip)

    async def _repair(self, wait: float) -> None:
        again = False
        try:
            if wait:
                await asyncio.sleep(wait)
            for _ in range(REPAIR_PAGES):
                again = not self.closed and await self._repair_once()
                if not again:
                    break
        except Exception:  # the database is unreachable: the next sweep tries again
            log.warning("bus: repair of account %d failed", self.account_id, exc_info=True)
            again = False
        finally:
            self.repairing = None
        if again:
            self.repair()  # a long gap: the next pages, after the loop has run others

    async def _repair_once(self) -> bool:
        """One pass: hand on what is held, reading from the database what is missing before
        it. True if there may be more to do."""
        held, self.held = self.held, []
        try:
            return await self._fill(held)
        except BaseException:
            self.held[:0] = held  # (kept for the next try)
            raise

    async def _fill(self, held: list[_Held]) -> bool:
        live = {seq: (event, skip) for seq, _, event, skip in held if seq > self.last_seq}
        target = max([self.want, *live])
        known: dict[int, tuple[_Event, Session | None]] = {}  # by seq, up to target
        extra: list[Delivery] = []  # acked since: no seq known any more
        bound = 0  # a long stretch of acked messages: ids up to this one now, then again
        more = False
        # (Every live seq is in (last_seq, target]: fewer than that many means a gap.)
        if len(live) < target - self.last_seq:
            target, more = await self._read_back(target, known)
            have = set(known) | {seq for seq in live if seq <= target}
            if len(have) < target - self.last_seq:
                # Some seq is neither pending nor logged: a message acked since (or deleted,
                # or a notice older than the log keeps). What others sent the user since the
                # last id handed on is in its history, acked or not (ids rise with seqs, so
                # nothing missing is below last_id), up to the delivery at target if known.
                at = [
                    e.message_id
                    for seq, (e, _) in (*known.items(), *live.items())
                    if seq == target and isinstance(e, Delivery)
                ]
                extra = await self.bus.store.received_between(
                    self.account_id, self.last_id, at[0] + 1 if at else 0, REPAIR_PAGE
                )
                if len(extra) == REPAIR_PAGE:
                    more, bound = True, extra[-1].message_id
            self.bus.stats.repaired += len(known) + len(extra)
        for seq, (event, skip) in live.items():  # the live copies win: they know skip
            if seq <= target:
                known[seq] = (event, skip)
        if self.closed:
            return False
        if bound:  # deliveries up to bound, by id; the rest and the notices next pass
            found: list[tuple[Delivery, Session | None]] = [(d, None) for d in extra]
            found += [(e, s) for e, s in known.values() if isinstance(e, Delivery)]
            for delivery, skip in sorted(found, key=lambda pair: pair[0].message_id):
                if delivery.message_id <= bound:
                    self._hand(delivery, skip)
        else:
            missing = (s for s in range(self.last_seq + 1, target + 1) if s not in known)
            self._hand_in_order(known, extra, missing)
            self.last_seq = max(self.last_seq, target)
        for seq, _, event, skip in held:  # unsequenced events, in the order they came
            if not seq:
                self._hand(event, skip)
        for seq, prev, event, skip in held:  # beyond this pass: back in line
            if seq > self.last_seq:
                self.held.append((seq, prev, event, skip))
        return more or bool(self.held) or self.want > self.last_seq

    async def _read_back(
        self, target: int, known: dict[int, tuple[_Event, Session | None]]
    ) -> tuple[int, bool]:
        """Read what the database still has of (last_seq, target] into ``known``: pending
        deliveries and logged notices. Returns (the target of this pass, whether a page
        was full: then the rest is for the next pass)."""
        store, account = self.bus.store, self.account_id
        self.bus.stats.repairs += 1
        rows = await store.pending_by_seq(account, self.last_seq, target, REPAIR_PAGE)
        notices = await store.notices_by_seq(account, self.last_seq, target, REPAIR_PAGE)
        more = False
        for page in (rows, notices):
            if len(page) == REPAIR_PAGE:  # a long gap: up to this page's end now
                more, target = True, min(target, page[-1][0])
        for seq, delivery in rows:
            if seq <= target:
                known[seq] = (delivery, None)
        for seq, notice, origin in notices:
            if seq <= target:
                known[seq] = (logged(notice, origin == self.bus.node), None)
        return target, more

    def _hand_in_order(
        self,
        known: dict[int, tuple[_Event, Session | None]],
        extra: list[Delivery],
        missing: Iterator[int],
    ) -> None:
        """Hand on ``known`` in seq order with ``extra`` (messages acked since: their seqs are
        lost) in the ``missing`` seqs, oldest first: exact when nothing else is missing (a
        message deleted since, a pruned notice), and never against id order (ids rise with
        seqs: a delivery after a greater id would be dropped as seen)."""
        ids = {e.message_id for e, _ in known.values() if isinstance(e, Delivery)}
        items: list[tuple[float, _Event, Session | None]] = [
            (seq, event, skip) for seq, (event, skip) in sorted(known.items())
        ]
        slots = missing
        for delivery in sorted(extra, key=lambda d: d.message_id):
            if delivery.message_id in ids:
                continue  # (still pending: it is known by its seq)
            seq: float = next(slots, math.inf)
            after = [
                i + 1
                for i, (_, e, _) in enumerate(items)
                if isinstance(e, Delivery) and e.message_id < delivery.message_id
            ]
            before = [
                i
                for i, (_, e, _) in enumerate(items)
                if isinstance(e, Delivery) and e.message_id > delivery.message_id
            ]
            at = next((i for i, item in enumerate(items) if item[0] > seq), len(items))
            at = min(max(at, max(after, default=0)), min(before, default=len(items)))
            items.insert(at, (seq, delivery, None))
        for _, event, skip in items:
            self._hand(event, skip)


def logged(notice: LoggedNotice, here: bool) -> _Event:
    """A notice read back from the log as a feed hands it on."""
    return End(notice, here) if isinstance(notice, CloseReason) else notice


__all__ = ["GAP_GRACE", "RECENTLY_GONE", "REPAIR_PAGE", "End", "Feed"]
