"""The gap repair of core.nats_bus, in one process, against a store made of lists: events
reordered, lost, acked elsewhere before the repair, lost at the end (the sweep), deleted
before they arrive; notices (read marks, deleted ids, "end every session") in the same
sequence, lost and read back from the log in order. No NATS, no PostgreSQL: these run in
milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from core.bus import open_bus
from core.memory_store import MemoryStore
from core.nats_bus import NatsBus
from core.nats_feed import GAP_GRACE, End, Feed
from core.nats_wire import decode, decode_group, encode, encode_end, encode_group, to_wire
from core.postgres_store import PostgresStore
from core.store import LoggedNotice, SeqStore
from core.types import CloseReason, Delivery, MessagesDeleted, Notice, ReadMarker, SentCopy

BOB = 7


@dataclass
class Row:
    seq: int
    delivery: Delivery
    pending: bool = True


@dataclass
class FakeStore:
    """Bob's messages and notices as PostgreSQL would hold them: one sequence, message ids
    rising with it."""

    rows: list[Row] = field(default_factory=list)
    notices: dict[int, tuple[LoggedNotice, str]] = field(default_factory=dict)
    reads: int = 0

    @property
    def last_seq(self) -> int:
        return len(self.rows) + len(self.notices)

    def add(self, n: int) -> list[tuple[int, Delivery]]:
        out = []
        for _ in range(n):
            seq = self.last_seq + 1
            d = Delivery(100 + seq, "alice", f"m{seq}", 0, ("alice",), False, 1)
            self.rows.append(Row(seq, d))
            out.append((seq, d))
        return out

    def log(self, notice: LoggedNotice, origin: str = "elsewhere") -> int:
        seq = self.last_seq + 1
        self.notices[seq] = (notice, origin)
        return seq

    async def bus_baseline(self, account_id: int) -> tuple[int, int]:
        return 0, 0

    async def last_seqs(self, account_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
        return {BOB: (self.last_seq, False)}

    async def notices_by_seq(
        self, owner_id: int, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, LoggedNotice, str]]:
        self.reads += 1
        found = [(s, n, origin) for s, (n, origin) in sorted(self.notices.items())]
        return [row for row in found if after_seq < row[0] <= up_to_seq][:limit]

    async def prune_notices(self, older_than_ms: int) -> int:
        return 0

    def keep_notices(self, origin: str) -> None:
        pass

    def take_notice_seq(self, owner_id: int, notice: LoggedNotice) -> int:
        return 0

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
    got: list[Delivery | Notice | CloseReason] = field(default_factory=list)
    ended: list[CloseReason] = field(default_factory=list)

    def deliver(self, account_id: int, event: Delivery | Notice, skip: object = None) -> None:
        self.got.append(event)

    def end_local_sessions(self, account_id: int, reason: CloseReason) -> None:
        self.ended.append(reason)
        self.got.append(reason)

    @property
    def bodies(self) -> list[str]:
        return [e.body for e in self.got if isinstance(e, Delivery)]


def feed_of(store: FakeStore) -> tuple[NatsBus, Feed, Sink]:
    assert isinstance(store, SeqStore)  # (what core.bus.open_bus checks)
    bus = NatsBus("nats://127.0.0.1:1", store, node="here")
    sink = Sink()
    bus.attach(sink)
    feed = Feed(bus, BOB)
    feed.ready = True
    bus._feeds[BOB] = feed
    return bus, feed, sink


async def settle(feed: Feed) -> None:
    for _ in range(100):
        if feed.repairing is None and not feed.held:
            return
        await asyncio.sleep(GAP_GRACE)
    raise AssertionError("the feed never settled")


def offer(feed: Feed, seq: int, d: Delivery) -> None:
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
    bus, feed, sink = feed_of(store)
    (_, _), (s2, d2) = store.add(2)
    offer(feed, s2, d2)  # seq 1 never comes
    await settle(feed)
    assert sink.bodies == ["m1", "m2"] and bus.stats.repairs == 1


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
    events += [(ReadMarker(9, 5, 0), 12), (MessagesDeleted((1, 2)), 13)]  # (logged ones)
    for event, seq in events:
        _, body = encode(event, seq)
        _, got_seq, prev, back = decode(to_wire(body))
        assert back == event and got_seq == seq and prev == (seq - 1 if seq else 0)
    assert decode(b'{"t":"end","reason":"ACCOUNT_DELETED"}')[3] is CloseReason.ACCOUNT_DELETED
    _, seq, prev, reason = decode(to_wire(encode_end(CloseReason.PASSWORD_CHANGED, 7)))
    assert (seq, prev, reason) == (7, 6, CloseReason.PASSWORD_CHANGED)


def test_one_message_to_several_recipients_travels_once_and_unpacks_per_recipient():
    everyone = ("alice", "bob", "cy", "dee")
    copies = [
        (
            account,
            seq,
            Delivery(9, "alice", "hi ✓", 5, tuple(n for n in everyone if n != me), False, 3),
        )
        for account, seq, me in ((2, 11, "bob"), (3, 4, "cy"), (4, 1, "dee"), (1, 8, "alice"))
    ]
    wire = to_wire(encode_group(copies))
    assert wire.count("hi ✓".encode()) == 1
    assert decode_group(wire) == copies


async def test_a_long_gap_is_read_page_by_page_in_order():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    rows = store.add(1300)  # more than REPAIR_PAGE, lost but the last
    for row in store.rows[400:900]:
        row.pending = False  # some of them acked on another node meanwhile
    offer(feed, *rows[-1])
    await settle(feed)
    assert sink.bodies == [f"m{i}" for i in range(1, 1301)]


async def test_lost_notices_are_read_from_the_log_in_order_with_deliveries():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    (s1, d1), (_, d2) = store.add(2)
    store.log(ReadMarker(1, d2.message_id, 0))  # lost on the bus
    gone = MessagesDeleted((d1.message_id,))
    store.log(gone)  # lost too
    (s5, d5) = store.add(1)[0]
    offer(feed, s1, d1)
    offer(feed, s5, d5)  # after a gap of three: m2 and both notices
    await settle(feed)
    assert sink.got == [d1, d2, ReadMarker(1, d2.message_id, 0), gone, d5]


async def test_a_live_notice_in_sequence_passes_straight_through():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    (s1, d1) = store.add(1)[0]
    marker = ReadMarker(1, d1.message_id, 0)
    s2 = store.log(marker)
    offer(feed, s1, d1)
    feed.offer(s2, s2 - 1, marker, None)
    assert sink.got == [d1, marker] and store.reads == 0


async def test_the_sweep_finds_a_lost_last_notice():
    store = FakeStore()
    bus, feed, sink = feed_of(store)
    (s1, d1) = store.add(1)[0]
    offer(feed, s1, d1)
    store.log(MessagesDeleted((d1.message_id,)))  # its publish was lost; nothing follows
    await bus.sweep()
    await settle(feed)
    assert sink.got == [d1, MessagesDeleted((d1.message_id,))]


async def test_a_lost_end_of_every_session_ends_them_unless_this_node_wrote_it():
    store = FakeStore()
    bus, feed, sink = feed_of(store)
    store.log(CloseReason.PASSWORD_CHANGED, origin="here")  # this node's service did it
    await bus.sweep()
    await settle(feed)
    assert sink.ended == []  # (the session that changed the password stays)
    store.log(CloseReason.PASSWORD_CHANGED)  # another node's, lost on the bus
    await bus.sweep()
    await settle(feed)
    assert sink.ended == [CloseReason.PASSWORD_CHANGED]


async def test_an_end_this_node_published_only_moves_the_feed_on():
    store = FakeStore()
    _, feed, sink = feed_of(store)
    seq = store.log(CloseReason.PASSWORD_CHANGED, origin="here")
    feed.offer(seq, seq - 1, End(CloseReason.PASSWORD_CHANGED, here=True), None)
    assert sink.ended == [] and feed.last_seq == seq


async def test_a_lost_acked_delivery_comes_before_a_later_lost_notice():
    store = FakeStore()
    bus, feed, sink = feed_of(store)
    (s1, d1) = store.add(1)[0]
    offer(feed, s1, d1)
    (_, d2) = store.add(1)[0]
    store.rows[1].pending = False  # acked on another node: its seq is not pending any more
    marker = ReadMarker(1, d2.message_id, 0)
    store.log(marker)  # both publishes lost
    (_, d4) = store.add(1)[0]
    store.rows[2].pending = False
    await bus.sweep()
    await settle(feed)
    assert sink.got == [d1, d2, marker, d4]


def test_a_cluster_bus_needs_a_store_with_sequences():
    assert isinstance(PostgresStore("postgresql://127.0.0.1:1/x"), SeqStore)
    assert not isinstance(MemoryStore(), SeqStore)
    with pytest.raises(ValueError, match="PostgreSQL store"):
        open_bus("nats://127.0.0.1:1", MemoryStore(), node="n")
    assert isinstance(open_bus("nats://127.0.0.1:1", FakeStore(), node="n"), NatsBus)
