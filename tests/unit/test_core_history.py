"""Core behaviour of history, identity and notices (Rules 19-25) that only the core can see:
the session's event stream, what today's transports (``deliveries()``) still get, retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core import (
    ChatService,
    DeletedSenderPolicy,
    Forbidden,
    HashCost,
    InvalidArgument,
    LimitExceeded,
    MemoryStore,
    SqliteStore,
    limits,
)
from core import service as service_module
from core.session import Session
from core.types import Delivery, MessagesDeleted, ReadMarker, Retention, SentCopy, SessionEvent


@pytest.fixture(params=["sqlite", "memory"])
async def service(request, tmp_path) -> AsyncIterator[ChatService]:
    store = SqliteStore(tmp_path / "chat.db") if request.param == "sqlite" else MemoryStore()
    service = ChatService(store, hash_cost=HashCost.LOW)
    yield service
    await service.shutdown()  # ends every session, so every Pump's stream ends
    await asyncio.sleep(0)
    await store.close()


async def user(service: ChatService, name: str, signup: bool = True) -> Session:
    session = service.open_session()
    if signup:
        await service.signup(session, name, "pw-secret-1")
    else:
        await service.login(session, name, "pw-secret-1")
    return session


class Pump:
    """Drains a session's stream in a task from the start, as a transport's pump does."""

    def __init__(self, stream: AsyncIterator[SessionEvent]) -> None:
        self.got: list[SessionEvent] = []
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[SessionEvent]) -> None:
        async for event in stream:
            self.got.append(event)
            self._arrived.set()

    async def take(self, count: int) -> list[SessionEvent]:
        """The first ``count`` events (waits at most 5 s), which are then consumed."""
        async with asyncio.timeout(5):
            while len(self.got) < count:
                self._arrived.clear()
                await self._arrived.wait()
        taken, self.got = self.got[:count], self.got[count:]
        return taken


async def pump(session: Session, deliveries_only: bool = False) -> Pump:
    result = Pump(session.deliveries() if deliveries_only else session.events())
    await asyncio.sleep(0)  # let it read the (empty) backlog and wait for live pushes
    return result


async def test_events_keep_notices_in_order_with_deliveries(service):
    alice, bob = await user(service, "alice"), await user(service, "bob")
    stream = await pump(bob)
    sent = await service.send(alice, ["bob"], "oops")
    await service.delete_messages(alice, [sent.message_id], for_everyone=True)
    after = await service.send(alice, ["bob"], "better")
    first, gone, second = await stream.take(3)
    assert isinstance(first, Delivery) and first.message_id == sent.message_id
    assert gone == MessagesDeleted((sent.message_id,))
    assert isinstance(second, Delivery) and second.message_id == after.message_id


async def test_deliveries_for_todays_transports_skip_notices(service):
    alice, bob = await user(service, "alice"), await user(service, "bob")
    phone = await user(service, "bob", signup=False)
    stream = await pump(bob, deliveries_only=True)
    one = await service.send(alice, ["bob"], "one")
    await service.mark_read(phone, one.conversation_id, one.message_id)  # a ReadMarker to bob
    await service.send(bob, ["alice"], "from bob's other device")  # a SentCopy to phone only
    await service.delete_messages(phone, [one.message_id])  # MessagesDeleted to bob
    await service.send(alice, ["bob"], "two")
    assert [d.body for d in await stream.take(2)] == ["one", "two"]  # type: ignore[union-attr]
    await asyncio.sleep(0.05)
    assert stream.got == []  # and nothing else


async def test_live_deliveries_name_the_other_participants_per_recipient(service):
    alice, bob, cy = [await user(service, n) for n in ("alice", "bob", "cy")]
    bob_stream, cy_stream = await pump(bob), await pump(cy)
    result = await service.send(alice, ["bob", "cy", "ghost"], "group")
    [to_bob], [to_cy] = await bob_stream.take(1), await cy_stream.take(1)
    assert isinstance(to_bob, Delivery) and isinstance(to_cy, Delivery)
    assert to_bob.participants == ("alice", "cy") and to_cy.participants == ("alice", "bob")
    assert to_bob.conversation_id == to_cy.conversation_id == result.conversation_id
    assert result.unknown_recipients == ("ghost",)


async def test_a_note_to_yourself_is_a_delivery_not_a_sent_copy(service):
    laptop = await user(service, "alice")
    phone = await user(service, "alice", signup=False)
    stream = await pump(phone)
    await service.send(laptop, ["alice"], "note")
    await service.send(laptop, ["alice"], "second note")
    events = await stream.take(2)
    assert all(isinstance(e, Delivery) and e.participants == () for e in events)


async def test_sent_copies_and_read_markers_skip_the_session_that_caused_them(service):
    laptop = await user(service, "alice")
    phone = await user(service, "alice", signup=False)
    bob = await user(service, "bob")
    laptop_stream, phone_stream = await pump(laptop), await pump(phone)
    sent = await service.send(laptop, ["bob"], "hi")
    marker = await service.mark_read(phone, sent.conversation_id, sent.message_id)
    assert marker == ReadMarker(sent.conversation_id, sent.message_id, 0)
    await service.send(bob, ["alice"], "reply")
    laptop_events = await laptop_stream.take(2)
    phone_events = await phone_stream.take(2)
    assert isinstance(laptop_events[0], ReadMarker) and isinstance(laptop_events[1], Delivery)
    assert isinstance(phone_events[0], SentCopy) and isinstance(phone_events[1], Delivery)


async def test_bad_history_requests_are_refused_in_words(service):
    alice, bob = await user(service, "alice"), await user(service, "bob")
    sent = await service.send(alice, ["bob"], "hi")
    outsider = await user(service, "eve")
    with pytest.raises(InvalidArgument, match="no conversation"):
        await service.mark_read(outsider, sent.conversation_id, sent.message_id)
    with pytest.raises(InvalidArgument, match="by its id or by its participants"):
        await service.read_history(alice, ["bob"], conversation_id=sent.conversation_id)
    with pytest.raises(InvalidArgument):
        await service.read_history(alice, ["bob"], before_id=-1)
    with pytest.raises(InvalidArgument):
        await service.list_conversations(alice, limit=-1)
    with pytest.raises(LimitExceeded):
        await service.delete_messages(alice, list(range(1, limits.MAX_DELETE_IDS + 2)))
    with pytest.raises(Forbidden, match="only the sender"):
        await service.delete_messages(bob, [sent.message_id], for_everyone=True)
    peek = await service.read_history(outsider, conversation_id=sent.conversation_id)
    assert peek.messages == () and peek.participants == ()  # not yours: nothing to see
    unknown = await service.read_history(alice, ["nobody"])
    assert (unknown.conversation_id, unknown.messages) == (0, ())
    assert (await service.read_history(alice, ["alice", "bob"])).conversation_id == (
        sent.conversation_id
    )  # your own name in the list changes nothing


async def test_keep_policy_marks_the_deleted_sender_on_the_pushed_backlog(tmp_path):
    service = ChatService(
        SqliteStore(tmp_path / "c.db"),
        hash_cost=HashCost.LOW,
        deleted_sender=DeletedSenderPolicy.KEEP,
    )
    alice, bob = await user(service, "alice"), await user(service, "bob")
    service.close_session(bob)
    await service.send(alice, ["bob"], "kept")
    await service.delete_account(alice, "alice", "pw-secret-1")
    await user(service, "alice")  # the name is someone else's now
    bob = await user(service, "bob", signup=False)
    [kept] = await (await pump(bob)).take(1)
    await service.shutdown()
    assert isinstance(kept, Delivery)
    assert (kept.sender, kept.sender_deleted, kept.participants) == ("alice", True, ("alice",))


async def test_purged_copies_are_announced_to_recipients_on_screen(service):
    alice, bob = await user(service, "alice"), await user(service, "bob")
    stream = await pump(bob)
    sent = await service.send(alice, ["bob"], "pushed, not yet acked")
    await service.delete_account(alice, "alice", "pw-secret-1")
    delivered, gone = await stream.take(2)
    assert isinstance(delivered, Delivery)
    assert gone == MessagesDeleted((sent.message_id,))


async def test_retention_runs_from_send_and_keeps_pending_copies(service, monkeypatch):
    monkeypatch.setattr(service_module, "PRUNE_INTERVAL", 0.0)
    service.retention = Retention(max_messages_per_user=2)
    alice, bob = await user(service, "alice"), await user(service, "bob")
    service.close_session(bob)  # offline: everything stays pending to bob
    for i in range(5):
        await service.send(alice, ["bob"], f"m{i}")
        assert service._pruning is not None
        await service._pruning
    page = await service.read_history(alice, ["bob"])
    assert [m.body for m in page.messages] == ["m4", "m3"]
    bob = await user(service, "bob", signup=False)
    assert len((await service.read_history(bob, ["alice"])).messages) == 5  # all pending
    assert await service.prune_history() == 0


async def test_a_slow_consumer_counts_notices_too(service):
    alice = await user(service, "alice")
    phone = await user(service, "alice", signup=False)
    await user(service, "bob")
    for i in range(limits.MAX_SESSION_QUEUE + 1):  # SentCopy notices only, never read
        await service.send(alice, ["bob"], f"m{i}")
    assert phone.closed


async def test_history_and_read_state_survive_a_restart(tmp_path):
    path = tmp_path / "chat.db"
    first = ChatService(SqliteStore(path), hash_cost=HashCost.LOW)
    alice, bob = await user(first, "alice"), await user(first, "bob")
    one = await first.send(alice, ["bob"], "one")
    await first.send(alice, ["bob"], "two")
    await first.mark_read(bob, one.conversation_id, one.message_id)
    await first.shutdown()
    await first.store.close()

    second = ChatService(SqliteStore(path), hash_cost=HashCost.LOW)
    bob = await user(second, "bob", signup=False)
    page = await second.read_history(bob, ["alice"])
    assert [m.body for m in page.messages] == ["two", "one"]
    assert page.read_up_to == one.message_id
    [listed] = (await second.list_conversations(bob)).conversations
    assert (listed.participants, listed.unread) == (("alice",), 1)
    await second.shutdown()
    await second.store.close()
