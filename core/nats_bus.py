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
  * A message to ``GROUP_FANOUT`` or more recipients goes out once, on ``<prefix>.g``, which
    every node hears (the body once, each recipient's id, seq and name): per recipient it
    would carry the whole body once per recipient. Its recipients' feeds put it in order
    with what comes on their own subjects (a different subscription, so possibly late:
    the seqs say where it belongs).
  * Each delivery carries the recipient's sequence number and the one before it (``seq``,
    ``prev``), drawn under the recipient's row lock (core.postgres_store), so for one
    recipient seqs and message ids rise together in commit order. Global ids alone cannot
    detect a loss: commits on different nodes finish out of id order.
  * Notices take the same sequence (core.postgres_base, "the notice log"): a read mark,
    the ids that left a user's history, and "end every session" after a password change
    are logged in the user's sequence in the transaction that makes them true, and carry
    their ``seq`` and ``prev`` on the bus like deliveries. So one user's deliveries and
    notices reach every node in one order, and a lost notice is a gap like a lost
    delivery. The service builds the notice it pushes from what the store returned; the
    bus asks the store for the seq that notice took (``SeqStore.take_notice_seq``).
  * Per watched user a :class:`Feed` hands events to this node's sessions in seq order.
    An event whose ``prev`` is not the last seq handed on is a gap: the feed holds it (and
    everything after it) for ``GAP_GRACE`` seconds, as the missing one is usually in flight,
    then reads what is still missing from PostgreSQL: pending copies and logged notices by
    seq, and if some seq is in neither (another session acked that message meanwhile) the
    messages others sent the user between the two ids, from the user's history. Sessions
    drop ids they have already yielded (core.session), so a repair that overlaps the
    backlog is harmless.
  * A sweep every ``sweep_interval`` seconds reads every watched user's ``last_seq`` (one
    query) and repairs any feed behind it: a lost last event, a node that died between its
    commit and its publish, a bus that was down. So a lost read mark, deletion notice or
    "end every session" (password changed) arrives within a sweep interval. The sweep also
    ends the sessions of accounts that were deleted (their "end" is not logged: the
    account row says it). On reconnecting to NATS the node sweeps at once.
  * Not in the sequence: "sent by you" copies (Rule 24) to the sender's other sessions; one
    lost with the bus shows at that device's next history read. A session that logs in on
    a node after a password change, while that node's feed has not yet handed on the
    change's lost "end" (at most a sweep interval), is ended with the others: it logs in
    again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.nats_feed import GAP_GRACE, End, Feed
from core.nats_wire import decode, decode_group, encode, encode_end, encode_group, to_wire
from core.store import SeqStore
from core.types import CloseReason, Delivery, MessagesDeleted, Notice, ReadMarker

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
#: Seconds a logged notice is kept for a node that missed it (the store's notice log): a
#: node repairs a gap within a sweep interval while it reaches PostgreSQL, so an hour
#: covers any outage its sessions live through. Pruned every NOTICE_PRUNE_INTERVAL seconds
#: by every node (one indexed DELETE).
NOTICE_RETENTION = 3600.0
NOTICE_PRUNE_INTERVAL = 60.0
#: Recipients from which one message's deliveries go out as one event on a subject every
#: node hears (``<prefix>.g``) rather than one per recipient, each with the whole body: a
#: 64 KiB message to 256 people would be 16 MiB through NATS. Below it, per-recipient
#: subjects reach only the nodes that hold a recipient. At 3, a three-node cluster gets at
#: most two copies (the other nodes) either way; a larger cluster may want it higher.
GROUP_FANOUT = 3
#: Accounts per sweep query (an ``= ANY($1)`` list).
SWEEP_CHUNK = 5000
#: Events waiting for the publisher task. Past it events are dropped (the sweep repairs
#: deliveries): the bus is at-most-once by design, memory is not unbounded.
MAX_OUTBOX = 100_000
#: Connection attempts at start before a node gives up (0.5 s apart).
START_ATTEMPTS = 3
#: nats-py's buffer while disconnected (bytes): published on reconnect, dropped beyond.
PENDING_BYTES = 8 * 1024 * 1024


@dataclass
class BusStats:
    """Counters a test or the bench reads (``NatsBus.stats``); logged at close."""

    published: int = 0
    groups: int = 0  # messages sent once for several recipients (GROUP_FANOUT)
    dropped: int = 0  # publishes NATS refused (disconnected, buffer full): the sweep repairs
    received: int = 0
    gaps: int = 0  # deliveries that arrived after a gap
    repairs: int = 0  # database reads that filled a gap
    repaired: int = 0  # deliveries those reads found
    sweeps: int = 0
    resyncs: int = 0  # full sweeps after a reconnect


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
        store.keep_notices(node)  # (notices repairable like deliveries: the theory above)
        self._sink: BusSink | None = None
        self._nc: nats.aio.client.Client | None = None
        self._feeds: dict[int, Feed] = {}
        # Message id -> (recipient, seq, delivery) published this turn (see publish).
        self._copies: dict[int, list[tuple[int, int, Delivery]]] = {}
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
        await self._nc.subscribe(f"{self.prefix}.g", cb=self._on_group)
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
        if not seq and isinstance(event, (ReadMarker, MessagesDeleted)):
            seq = self.store.take_notice_seq(account_id, event)  # (its place, if logged)
        feed = self._feeds.get(account_id)
        if feed is not None:  # this node's own sessions, through the same ordering
            feed.offer(seq, seq - 1 if seq else 0, event, skip)
        if isinstance(event, Delivery) and seq:
            # The service publishes one message's deliveries in one go: gathered until this
            # turn of the loop ends, then sent once to every node or once per recipient.
            if not self._copies:
                asyncio.get_running_loop().call_soon(self._send_copies)
            self._copies.setdefault(event.message_id, []).append((account_id, seq, event))
            return
        suffix, body = encode(event, seq)
        self._send(f"{self.prefix}.u.{account_id}.{suffix}", body)

    def end_sessions(self, account_id: int, reason: CloseReason) -> None:
        seq = self.store.take_notice_seq(account_id, reason)  # (a password change: logged)
        feed = self._feeds.get(account_id)
        if feed is not None and seq:  # (only to move the feed past it: see End)
            feed.offer(seq, seq - 1, End(reason, here=True), None)
        self._send(f"{self.prefix}.u.{account_id}.ctl", encode_end(reason, seq))

    async def watch(self, account_id: int) -> None:
        feed = self._feeds.get(account_id)
        if feed is None:
            feed = self._feeds[account_id] = Feed(self, account_id)
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
        self._send_copies()
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
        pruned = time.monotonic()
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
                if time.monotonic() - pruned >= NOTICE_PRUNE_INTERVAL:
                    pruned = time.monotonic()
                    cut = int(time.time() * 1000 - NOTICE_RETENTION * 1000)
                    await self.store.prune_notices(cut)
            except Exception:  # the database is away: try again next time
                log.warning("bus: sweep failed", exc_info=True)

    # -- internals ----------------------------------------------------------------------------
    async def _open(self, feed: Feed) -> None:
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

    async def _on_group(self, msg: nats.aio.msg.Msg) -> None:
        """A message to several recipients: to the feeds of those watched here."""
        self.stats.received += 1
        try:
            copies = decode_group(msg.data)
        except (ValueError, KeyError, TypeError, IndexError):
            log.warning("bus: dropped a malformed event on %s", msg.subject)
            return
        for account_id, seq, delivery in copies:
            feed = self._feeds.get(account_id)
            if feed is not None:
                feed.offer(seq, seq - 1, delivery, None)

    def _handler(self, feed: Feed) -> Any:
        async def on_message(msg: nats.aio.msg.Msg) -> None:
            self.stats.received += 1
            try:
                _, seq, prev, event = decode(msg.data)
            except (ValueError, KeyError, TypeError):
                log.warning("bus: dropped a malformed event on %s", msg.subject)
                return
            if isinstance(event, CloseReason):
                if seq:  # in order with the user's other events (and repairable)
                    feed.offer(seq, prev, End(event, here=False), None)
                else:  # (an account deletion: the sweep sees the account gone)
                    self.sink.end_local_sessions(feed.account_id, event)
            else:
                feed.offer(seq, prev, event, None)

        return on_message

    def _send_copies(self) -> None:
        """Queue the deliveries gathered by ``publish``: a message to GROUP_FANOUT or more
        recipients once on the subject every node hears, a smaller one on each recipient's
        subject (only the nodes that hold the recipient hear it)."""
        copies, self._copies = self._copies, {}
        for group in copies.values():
            if len(group) >= GROUP_FANOUT:
                self.stats.groups += 1
                self._send(f"{self.prefix}.g", encode_group(group))
                continue
            for account_id, seq, delivery in group:
                _, body = encode(delivery, seq)
                self._send(f"{self.prefix}.u.{account_id}.msg", body)

    def _send(self, subject: str, body: dict[str, Any]) -> None:
        if self._copies:  # (first the deliveries published before this: commit order)
            self._send_copies()
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
    "GROUP_FANOUT",
    "NOTICE_RETENTION",
    "SWEEP_INTERVAL",
    "BusStats",
    "NatsBus",
    "decode",
    "decode_group",
    "encode",
    "encode_end",
    "encode_group",
    "to_wire",
]
