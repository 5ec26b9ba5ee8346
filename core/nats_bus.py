"""NatsBus: the cluster's bus, NATS core pub/sub between nodes that share one PostgreSQL.

Theory of operation (DESIGN.md "Scale-out")
  * The database is the truth; the bus is at-most-once. A node publishes an event after the
    commit that made it true, on the subject of the user it concerns:
    ``<prefix>.u.<account id>.msg`` for deliveries and "sent by you" copies,
    ``<prefix>.u.<account id>.ctl`` for control: read marks, deleted messages, end every
    session (account deleted, password changed). A node holding a session of that user
    subscribes to ``<prefix>.u.<account id>.*`` (one subscription, so NATS keeps the order
    of one publisher's events across both subjects). ``no_echo``: a node never hears its own
    publishes; it hands its own events to its sessions directly, through the same feed.
  * Each delivery carries the recipient's sequence number and the one before it (``seq``,
    ``prev``), drawn under the recipient's row lock (core.postgres_store), so for one
    recipient seqs and message ids rise together in commit order. Global ids alone cannot
    detect a loss: commits on different nodes finish out of id order.
  * Per watched user a :class:`_Feed` hands deliveries to this node's sessions in seq order.
    A delivery whose ``prev`` is not the last seq handed on is a gap: the feed holds it (and
    everything after it) for ``GAP_GRACE`` seconds, as the missing one is usually in flight,
    then reads what is still missing from PostgreSQL: pending copies by seq, and if some seq
    is not pending any more (another session acked it meanwhile) the messages others sent
    the user between the two ids, from the user's history. Sessions drop ids they have
    already yielded (core.session), so a repair that overlaps the backlog is harmless.
  * A sweep every ``sweep_interval`` seconds reads every watched user's ``last_seq`` (one
    query) and repairs any feed behind it: a lost last message, a node that died between its
    commit and its publish, a bus that was down. It also ends the sessions of accounts that
    were deleted (a lost "end" event). On reconnecting to NATS the node sweeps at once.
  * Not repaired: read marks and deleted-message notices lost with the bus (a client sees
    them at its next history read), and their order relative to deliveries across nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from core.types import CloseReason, Delivery, MessagesDeleted, Notice, ReadMarker, SentCopy

if TYPE_CHECKING:
    import nats.aio.client
    import nats.aio.msg
    import nats.aio.subscription

    from core.bus import BusSink
    from core.session import Session

log = logging.getLogger(__name__)

#: Seconds between two sweeps: the longest a lost publish stays unrepaired while the bus is
#: up (and the delivery latency while NATS is down). One indexed query per sweep.
SWEEP_INTERVAL = 1.0
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
#: Accounts per sweep query (an ``= ANY($1)`` list).
SWEEP_CHUNK = 5000
#: Events waiting for the publisher task. Past it events are dropped (the sweep repairs
#: deliveries): the bus is at-most-once by design, memory is not unbounded.
MAX_OUTBOX = 100_000
#: Connection attempts at start before a node gives up (0.5 s apart).
START_ATTEMPTS = 3
#: nats-py's buffer while disconnected (bytes): published on reconnect, dropped beyond.
PENDING_BYTES = 8 * 1024 * 1024


class SeqStore(Protocol):
    """What the bus reads from the store (core.postgres_store.PostgresStore has it)."""

    async def bus_baseline(self, account_id: int) -> tuple[int, int]: ...

    async def last_seqs(self, account_ids: Sequence[int]) -> dict[int, tuple[int, bool]]: ...

    async def pending_by_seq(
        self, recipient_id: int, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, Delivery]]: ...

    async def received_between(
        self, recipient_id: int, after_id: int, below_id: int, limit: int
    ) -> list[Delivery]: ...


@dataclass
class BusStats:
    """Counters a test or the bench reads (``NatsBus.stats``); logged at close."""

    published: int = 0
    dropped: int = 0  # publishes NATS refused (disconnected, buffer full): the sweep repairs
    received: int = 0
    gaps: int = 0  # deliveries that arrived after a gap
    repairs: int = 0  # database reads that filled a gap
    repaired: int = 0  # deliveries those reads found
    sweeps: int = 0
    resyncs: int = 0  # full sweeps after a reconnect


# -- the wire format: one JSON object per event --------------------------------------------
def encode(event: Delivery | Notice, seq: int = 0) -> tuple[str, dict[str, Any]]:
    """(subject suffix, JSON object) for an event."""
    if isinstance(event, Delivery):
        return "msg", {"t": "d", "seq": seq, "prev": seq - 1 if seq else 0, **_message(event)}
    if isinstance(event, SentCopy):
        return "msg", {"t": "c", **_message(event.message)}
    if isinstance(event, ReadMarker):
        return "ctl", {
            "t": "r",
            "conv": event.conversation_id,
            "up": event.up_to_id,
            "unread": event.unread,
        }
    return "ctl", {"t": "x", "ids": list(event.message_ids)}


def _message(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.message_id,
        "from": d.sender,
        "body": d.body,
        "at": d.sent_at_ms,
        "others": list(d.participants),
        "sd": d.sender_deleted,
        "conv": d.conversation_id,
    }


def _delivery(o: dict[str, Any]) -> Delivery:
    return Delivery(o["id"], o["from"], o["body"], o["at"], tuple(o["others"]), o["sd"], o["conv"])


def to_wire(obj: dict[str, Any]) -> bytes:
    """The bytes published: compact JSON in UTF-8 as is (\\u escapes would triple a CJK
    body), with surrogatepass, as the service measured the body."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def decode(data: bytes) -> tuple[str, int, int, Delivery | Notice | CloseReason]:
    """(kind, seq, prev, event) of a published event; kind "end" carries a CloseReason."""
    o = json.loads(data.decode("utf-8", "surrogatepass"))
    kind = o["t"]
    if kind == "d":
        return kind, o["seq"], o["prev"], _delivery(o)
    if kind == "c":
        return kind, 0, 0, SentCopy(_delivery(o))
    if kind == "r":
        return kind, 0, 0, ReadMarker(o["conv"], o["up"], o["unread"])
    if kind == "x":
        return kind, 0, 0, MessagesDeleted(tuple(o["ids"]))
    if kind == "end":
        return kind, 0, 0, CloseReason[o["reason"]]
    raise ValueError(f"unknown bus event kind {kind!r}")


class _Feed:
    """One watched user on this node: hands its events to the node's sessions in seq order,
    repairing gaps from the database (see the theory above)."""

    def __init__(self, bus: NatsBus, account_id: int) -> None:
        self.bus = bus
        self.account_id = account_id
        self.last_seq = 0  # every delivery up to this seq has been handed on (or repaired)
        self.last_id = 0  # the id of the newest delivery handed on (ids rise with seqs)
        self.ready = False  # the baseline is read
        self.closed = False
        # Events that wait for a repair (or the baseline): (seq, prev, event, skip).
        self.held: list[tuple[int, int, Delivery | Notice, Session | None]] = []
        self.want = 0  # a sweep found last_seq this high: repair up to it
        self.repairing: asyncio.Task[None] | None = None
        self.opening: asyncio.Task[None] | None = None
        self.subscription: nats.aio.subscription.Subscription | None = None
        self.gone: deque[int] = deque(maxlen=RECENTLY_GONE)

    # -- events in --------------------------------------------------------------------------
    def offer(self, seq: int, prev: int, event: Delivery | Notice, skip: Session | None) -> None:
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
    def _hand(self, event: Delivery | Notice, skip: Session | None) -> None:
        if self.closed:
            return
        if isinstance(event, Delivery):
            if event.message_id <= self.last_id or event.message_id in self.gone:
                return  # handed on by a repair already, or deleted before it arrived
            self.last_id = event.message_id
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

    async def _fill(self, held: list[tuple[int, int, Delivery | Notice, Session | None]]) -> bool:
        seqs = {seq: (event, skip) for seq, _, event, skip in held if seq > self.last_seq}
        target = max([self.want, *seqs])
        found: dict[int, tuple[Delivery | Notice, Session | None]] = {}  # by message id
        bound = 0  # hand on ids up to this one only (0: all); then last_seq stays
        more = False
        # (Every held seq is in (last_seq, target]: fewer than that many means a gap.)
        if len(seqs) < target - self.last_seq:
            store, account = self.bus.store, self.account_id
            self.bus.stats.repairs += 1
            rows = await store.pending_by_seq(account, self.last_seq, target, REPAIR_PAGE)
            if len(rows) == REPAIR_PAGE:  # a long gap: this page now, the rest next pass
                more = True
                target = rows[-1][0]
            have = {seq for seq in seqs if seq <= target} | {seq for seq, _ in rows}
            if len(have) < target - self.last_seq:
                # Some seq is no longer pending: acked by another session, or deleted. What
                # others sent the user since the last id handed on is in its history,
                # acked or not (ids rise with seqs, so nothing missing is below last_id).
                known = [d.message_id for seq, d in rows if seq == target] + [
                    e.message_id
                    for seq, (e, _) in seqs.items()
                    if seq == target and isinstance(e, Delivery)
                ]
                below = known[0] + 1 if known else 0  # (0: no bound)
                extra = await store.received_between(account, self.last_id, below, REPAIR_PAGE)
                if len(extra) == REPAIR_PAGE:  # a long stretch: this page, then again
                    more = True
                    bound = extra[-1].message_id
                for delivery in extra:
                    found[delivery.message_id] = (delivery, None)
            for _, delivery in rows:
                found[delivery.message_id] = (delivery, None)
            self.bus.stats.repaired += len(found)
        for seq, (event, skip) in seqs.items():  # the live copies (same ids)
            if isinstance(event, Delivery) and seq <= target:
                found[event.message_id] = (event, skip)
        if self.closed:
            return False
        for message_id in sorted(found):
            if not bound or message_id <= bound:
                self._hand(*found[message_id])
        if not bound:
            self.last_seq = max(self.last_seq, target)
        for seq, _, event, skip in held:  # notices, in the order they came
            if not seq:
                self._hand(event, skip)
        for seq, prev, event, skip in held:  # deliveries beyond a page: back in line
            if seq > self.last_seq:
                self.held.append((seq, prev, event, skip))
        return more or bool(self.held) or self.want > self.last_seq


class NatsBus:
    """The bus of a node of a cluster: NATS at ``url``, sequences from ``store`` (a
    PostgresStore). ``node`` names this node in NATS (``CONNZ``) and in logs."""

    local = False

    def __init__(
        self,
        url: str,
        store: SeqStore,
        *,
        node: str,
        sweep_interval: float = SWEEP_INTERVAL,
        prefix: str = "wc",
    ) -> None:
        self.url = url
        self.store = store
        self.node = node
        self.sweep_interval = sweep_interval
        self.prefix = prefix
        self.stats = BusStats()
        self._sink: BusSink | None = None
        self._nc: nats.aio.client.Client | None = None
        self._feeds: dict[int, _Feed] = {}
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def sink(self) -> BusSink:
        assert self._sink is not None, "the service attaches itself first"
        return self._sink

    def attach(self, sink: BusSink) -> None:
        self._sink = sink

    async def start(self) -> None:
        """Connect to NATS (OSError-like ConnectionError in a person's words if it is not
        there) and start the publisher and the sweep."""
        import nats

        try:
            self._nc = await nats.connect(
                servers=[self.url],
                name=f"wirechat {self.node}",
                no_echo=True,
                allow_reconnect=True,
                # A few tries at start (nats-py's -1 would retry an absent server forever);
                # once connected, forever (below): a node outlives a NATS restart.
                max_reconnect_attempts=START_ATTEMPTS,
                reconnect_time_wait=0.5,
                connect_timeout=5,
                ping_interval=5,  # notice a half-open connection in ~10 s, not 4 min
                max_outstanding_pings=2,
                pending_size=PENDING_BYTES,
                disconnected_cb=self._disconnected,
                reconnected_cb=self._reconnected,
                error_cb=self._error,
            )
        except Exception as exc:
            raise ConnectionError(
                f"cannot reach the NATS server at {self.url}: {exc!r}; is nats-server running?"
            ) from exc
        # nats-py reads the option at each reconnect: from now on, never give up.
        self._nc.options["max_reconnect_attempts"] = -1
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publisher(), name="wirechat-bus-publisher"),
            loop.create_task(self._sweeper(), name="wirechat-bus-sweeper"),
        ]
        log.info(
            "bus: node %s on %s (sweep every %.1f s)", self.node, self.url, self.sweep_interval
        )

    # -- the Bus interface --------------------------------------------------------------------
    def publish(
        self,
        account_id: int,
        event: Delivery | Notice,
        skip: Session | None = None,
        seq: int = 0,
    ) -> None:
        feed = self._feeds.get(account_id)
        if feed is not None:  # this node's own sessions, through the same ordering
            feed.offer(seq, seq - 1 if seq else 0, event, skip)
        suffix, body = encode(event, seq)
        self._send(f"{self.prefix}.u.{account_id}.{suffix}", body)

    def end_sessions(self, account_id: int, reason: CloseReason) -> None:
        self._send(f"{self.prefix}.u.{account_id}.ctl", {"t": "end", "reason": reason.name})

    async def watch(self, account_id: int) -> None:
        feed = self._feeds.get(account_id)
        if feed is None:
            feed = self._feeds[account_id] = _Feed(self, account_id)
            feed.opening = asyncio.get_running_loop().create_task(self._open(feed))
        if feed.opening is not None and not feed.opening.done():
            # Shielded: one login giving up must not cancel the others' wait.
            await asyncio.shield(feed.opening)

    def unwatch(self, account_id: int) -> None:
        feed = self._feeds.pop(account_id, None)
        if feed is None:
            return
        feed.close()
        if feed.subscription is not None:
            self._background(feed.subscription.unsubscribe())

    async def close(self) -> None:
        for feed in list(self._feeds.values()):
            feed.close()
        self._feeds.clear()
        for _ in range(200):  # what is still to publish, for up to 2 s (then the sweep)
            if not self._outbox or not self._nc or not self._nc.is_connected:
                break
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self._nc.close()
        log.info("bus: closed (%s)", self.stats)

    # -- sweeping -----------------------------------------------------------------------------
    async def sweep(self) -> None:
        """Compare every watched user's feed with the database: repair a feed behind its
        last_seq, end the sessions of a deleted account."""
        self.stats.sweeps += 1
        ids = [account for account, feed in self._feeds.items() if feed.ready]
        for start in range(0, len(ids), SWEEP_CHUNK):
            found = await self.store.last_seqs(ids[start : start + SWEEP_CHUNK])
            for account_id, (last_seq, deleted) in found.items():
                if deleted:
                    self.sink.end_local_sessions(account_id, CloseReason.ACCOUNT_DELETED)
                    continue
                feed = self._feeds.get(account_id)
                if feed is not None and (last_seq > feed.last_seq or feed.held):
                    feed.repair(up_to=last_seq)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception:  # the database is away: try again next time
                log.warning("bus: sweep failed", exc_info=True)

    # -- internals ----------------------------------------------------------------------------
    async def _open(self, feed: _Feed) -> None:
        """Subscribe, make sure NATS has the subscription, then read where the user's
        sequence stands: anything committed after that read reaches this node."""
        assert self._nc is not None
        feed.subscription = await self._nc.subscribe(
            f"{self.prefix}.u.{feed.account_id}.*", cb=self._handler(feed)
        )
        if feed.closed:  # (the last session went while we subscribed)
            await feed.subscription.unsubscribe()
            return
        try:
            await self._nc.flush(timeout=2)
        except Exception:  # disconnected: the sweep after the reconnect covers the gap
            log.info("bus: NATS did not confirm a subscription; the sweep will catch up")
        feed.last_seq, feed.last_id = await self.store.bus_baseline(feed.account_id)
        feed.ready = True
        if feed.held:
            feed.repair()

    def _handler(self, feed: _Feed) -> Any:
        async def on_message(msg: nats.aio.msg.Msg) -> None:
            self.stats.received += 1
            try:
                _, seq, prev, event = decode(msg.data)
            except (ValueError, KeyError, TypeError):
                log.warning("bus: dropped a malformed event on %s", msg.subject)
                return
            if isinstance(event, CloseReason):
                self.sink.end_local_sessions(feed.account_id, event)
            else:
                feed.offer(seq, prev, event, None)

        return on_message

    def _send(self, subject: str, body: dict[str, Any]) -> None:
        if len(self._outbox) >= MAX_OUTBOX:
            self.stats.dropped += 1
            return
        self._outbox.append((subject, to_wire(body)))
        self._wake.set()

    async def _publisher(self) -> None:
        """Publish the outbox in order (one task, so events leave in commit order)."""
        import nats.errors

        assert self._nc is not None
        while True:
            while not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            subject, data = self._outbox.popleft()
            try:
                await self._nc.publish(subject, data)
                self.stats.published += 1
            except (nats.errors.Error, OSError):  # down and buffer full, or closing
                self.stats.dropped += 1
            except Exception:  # never let one event stop the publisher
                self.stats.dropped += 1
                log.exception("bus: could not publish on %s", subject)

    def _background(self, coro: Any) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _disconnected(self) -> None:
        log.warning("bus: disconnected from NATS; deliveries go on through the sweep")

    async def _reconnected(self) -> None:
        log.warning("bus: reconnected to NATS; resyncing every watched user")
        self.stats.resyncs += 1
        self._background(self._resync())

    async def _resync(self) -> None:
        assert self._nc is not None
        with contextlib.suppress(Exception):
            await self._nc.flush(timeout=2)  # our subscriptions are in place again
        await self.sweep()

    async def _error(self, exc: Exception) -> None:
        log.info("bus: NATS: %s", exc)


__all__ = [
    "GAP_GRACE",
    "SWEEP_INTERVAL",
    "BusStats",
    "NatsBus",
    "SeqStore",
    "decode",
    "encode",
    "to_wire",
]
