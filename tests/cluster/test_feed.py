"""The gap repair of core.nats_bus, in one process, against a store made of lists: events
reordered, lost, acked elsewhere before the repair, lost at the end (the sweep), deleted
before they arrive. No NATS, no PostgreSQL: these run in milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.nats_bus import GAP_GRACE, NatsBus, _Feed, decode, encode, to_wire
from core.types import CloseReason, Delivery, MessagesDeleted, Notice, ReadMarker, SentCopy

BOB = 7


@dataclass
class Row:
    seq: int
    delivery: Delivery
    pending: bool = True


@dataclass
class FakeStore:
    """Bob's messages as PostgreSQL would hold them (seqs and ids rise together)."""

    rows: list[Row] = field(default_factory=list)
    reads: int = 0

    def add(self, n: int) -> list[tuple[int, Delivery]]:
        out = []
        for _ in range(n):
            seq = len(self.rows) + 1
            d = Delivery(100 + seq, "alice", f"m{seq}", 0, ("alice",), False, 1)
            self.rows.append(Row(seq, d))
            out.append((seq, d))
        return out

    async def bus_baseline(self, account_id: int) -> tuple[int, int]:
        return 0, 0

    async def last_seqs(self, account_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
        return {BOB: (len(self.rows), False)}

    async def pending_by_seq(
        self, recipient_id: int, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, Delivery]]:
        self.reads += 1
        return [
            (r.seq, r.delivery) for r in self.rows if r.pending and after_seq < r.seq <= up_to_seq
        ][:limit]

    async def received_between(
        self, recipient_id: int, after_id: int, below_id: int, limit: int
    ) -> list[Delivery]:
        self.reads += 1
        return [
            r.delivery
            for r in self.rows
            if r.delivery.message_id > after_id
            and (not below_id or r.delivery.message_id < below_id)
        ][:limit]


@dataclass
class Sink:
    got: list[Delivery | Notice] = field(default_factory=list)
    ended: list[CloseReason] = field(default_factory=list)

    def deliver(self, account_id: int, event: Delivery | Notice, skip: object = None) -> None:
        self.got.append(event)

    def end_local_sessions(self, account_id: int, reason: CloseReason) -> None:
        self.ended.append(reason)

    @property
    def bodies(self) -> list[str]:
        return [e.body for e in self.got if isinstance(e, Delivery)]


def feed_of(store: FakeStore) -> tuple[NatsBus, _Feed, Sink]:
    bus = NatsBus("nats://127.0.0.1:1", store, node="test")
    sink = Sink()
    bus.attach(sink)
    feed = _Feed(bus, BOB)
    feed.ready = True
    bus._feeds[BOB] = feed
    return bus, feed, sink


async def settle(feed: _Feed) -> None:
    for _ in range(100):
        if feed.repairing is None and not feed.held:
            return
        await asyncio.sleep(GAP_GRACE)
    raise AssertionError("the feed never settled")


def offer(feed: _Feed, seq: int, d: Delivery) -> None:
    feed.offer(seq, seq - 1, d, None)


async def test_in_order_deliveries_pass_straight_through():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    for seq, d in store.add(3):
        offer(feed, seq, d)
    assert sink.bodies == ["m1", "m2", "m3"] and store.reads == 0


async def test_reordered_deliveries_are_put_back_in_order_without_a_read():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    (s1, d1), (s2, d2), (s3, d3) = store.add(3)
    offer(feed, s2, d2)
    offer(feed, s3, d3)
    offer(feed, s1, d1)  # within the grace period
    await settle(feed)
    assert sink.bodies == ["m1", "m2", "m3"] and store.reads == 0


async def test_a_lost_delivery_is_read_from_pending():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    (_, _), (s2, d2) = store.add(2)
    offer(feed, s2, d2)  # seq 1 never comes
    await settle(feed)
    assert sink.bodies == ["m1", "m2"] and store.reads == 1


async def test_a_lost_delivery_acked_by_another_session_comes_from_history():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    (s1, d1), (_, _), (_, _), (s4, d4) = store.add(4)
    offer(feed, s1, d1)
    store.rows[1].pending = store.rows[2].pending = False  # acked on another node
    offer(feed, s4, d4)
    await settle(feed)
    assert sink.bodies == ["m1", "m2", "m3", "m4"]


async def test_the_sweep_finds_a_lost_last_delivery():
    store = FakeStore()
    bus, feed, sink = feed_of(store)
    (s1, d1), _ = store.add(2)
    offer(feed, s1, d1)  # seq 2's publish was lost and nothing follows it
    await bus.sweep()
    await settle(feed)
    assert sink.bodies == ["m1", "m2"]


async def test_duplicates_and_late_copies_are_dropped():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    (_, _), (s2, d2), (s3, d3) = store.add(3)
    offer(feed, s2, d2)
    await settle(feed)  # read m1 and handed on m2
    offer(feed, s2, d2)  # the late live copy of m2, and of m1
    offer(feed, 1, store.rows[0].delivery)
    offer(feed, s3, d3)
    assert sink.bodies == ["m1", "m2", "m3"]


async def test_a_delivery_deleted_before_it_arrives_is_not_shown():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    (s1, d1), (s2, d2) = store.add(2)
    offer(feed, s1, d1)
    feed.offer(0, 0, MessagesDeleted((d2.message_id,)), None)  # overtook m2
    offer(feed, s2, d2)
    assert sink.bodies == ["m1"]


def test_the_wire_format_round_trips_every_event():
    d = Delivery(5, "alice", "héllo \x00 ✓ 你好 \U0001f600 \ud800", 123, ("bob", "carol"), True, 9)
    events: list[tuple[Delivery | Notice, int]] = [
        (d, 4),
        (SentCopy(d), 0),
        (ReadMarker(9, 5, 0), 0),
        (MessagesDeleted((1, 2)), 0),
    ]
    for event, seq in events:
        _, body = encode(event, seq)
        _, got_seq, prev, back = decode(to_wire(body))
        assert back == event and got_seq == seq and prev == (seq - 1 if seq else 0)
    assert decode(b'{"t":"end","reason":"ACCOUNT_DELETED"}')[3] is CloseReason.ACCOUNT_DELETED


async def test_a_long_gap_is_read_page_by_page_in_order():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    rows = store.add(1300)  # more than REPAIR_PAGE, lost but the last
    for row in store.rows[400:900]:
        row.pending = False  # some of them acked on another node meanwhile
    offer(feed, *rows[-1])
    await settle(feed)
    assert sink.bodies == [f"m{i}" for i in range(1, 1301)]
