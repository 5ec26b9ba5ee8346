"""ChatService.send's two ways to a store (issue 10): a store with ``add_message_now`` (the
in-memory store: a plain call, no coroutine, no StoredMessage) and one without (``add_message``,
awaited: SQLite, PostgreSQL). Both give the same replies, the same pushes to every live session
(Rule 10) with the same participants (Rule 21), the same "sent by you" copies (Rule 24) and
nothing for unknown names (Rule 8): each test runs both ways over the same memory store."""

from __future__ import annotations

import pytest

from core import ChatService, HashCost
from core.memory_store import MemoryStore
from core.session import Session
from core.types import Delivery, SendResult, SentCopy


@pytest.fixture(params=["add_message_now", "add_message"])
def service(request) -> ChatService:
    service = ChatService(MemoryStore(), hash_cost=HashCost.LOW)
    assert service._add_now is not None  # (the in-memory store has it)
    if request.param == "add_message":
        service._add_now = None  # (as over SQLite: the awaited add_message)
    return service


async def session_of(service: ChatService, name: str, *, signup: bool = True) -> Session:
    session = service.open_session()
    if signup:
        await service.signup(session, name, f"password-of-{name}-1")
    else:
        await service.login(session, name, f"password-of-{name}-1")
    return session


def queued(session: Session) -> list[object]:
    """What the service pushed to the session and its transport has not taken yet."""
    return list(session._live)


async def test_the_reply_names_the_message_its_conversation_and_the_unknown_names(service):
    al = await session_of(service, "al")
    await session_of(service, "bob")
    first = await service.send(al, ("bob",), "hi")
    second = await service.send(al, ("bob", "ghost"), "hi both")
    assert type(first) is SendResult and first.message_id > 0 and first.conversation_id > 0
    assert first.unknown_recipients == ()
    assert second.message_id > first.message_id
    assert second.unknown_recipients == ("ghost",)
    assert second.conversation_id == first.conversation_id  # (al and bob: ghost has no account)
    nobody = await service.send(al, ("ghost",), "anyone?")
    assert (nobody.message_id, nobody.conversation_id) == (0, 0)
    assert nobody.unknown_recipients == ("ghost",)


async def test_a_live_recipient_gets_the_message_with_the_other_participants(service):
    al = await session_of(service, "al")
    bob = await session_of(service, "bob")
    cy = await session_of(service, "cy")
    sent = await service.send(al, ("cy", "bob"), "hi all")
    for session, others in ((bob, ("al", "cy")), (cy, ("al", "bob"))):
        [delivery] = queued(session)
        assert delivery == Delivery(
            sent.message_id, "al", "hi all", sent.sent_at_ms, others, False, sent.conversation_id
        )
    assert queued(al) == []  # (the sender's only session: no copy)


async def test_the_senders_other_sessions_get_a_sent_by_you_copy(service):
    al = await session_of(service, "al")
    al_phone = await session_of(service, "al", signup=False)
    service.close_session(await session_of(service, "bob"))  # (bob is offline)
    sent = await service.send(al, ("bob",), "from my laptop")
    assert queued(al) == []
    assert queued(al_phone) == [
        SentCopy(
            Delivery(
                sent.message_id,
                "al",
                "from my laptop",
                sent.sent_at_ms,
                ("bob",),
                False,
                sent.conversation_id,
            )
        )
    ]


async def test_a_note_to_self_reaches_every_session_of_the_sender_as_a_delivery(service):
    al = await session_of(service, "al")
    al_phone = await session_of(service, "al", signup=False)
    sent = await service.send(al, ("al",), "remember the milk")
    for session in (al, al_phone):
        assert queued(session) == [
            Delivery(
                sent.message_id,
                "al",
                "remember the milk",
                sent.sent_at_ms,
                (),
                False,
                sent.conversation_id,
            )
        ]


async def test_an_offline_recipient_gets_it_at_login_and_nothing_is_pushed_meanwhile(service):
    al = await session_of(service, "al")
    bob = await session_of(service, "bob")
    service.close_session(bob)
    sent = await service.send(al, ("bob",), "while you were out")
    assert queued(al) == []
    again = await session_of(service, "bob", signup=False)
    assert queued(again) == []
    backlog = [d async for d in _backlog(again)]
    assert [(d.message_id, d.body) for d in backlog] == [(sent.message_id, "while you were out")]


async def _backlog(session: Session):
    """The session's stored backlog (its events up to the live queue, which is empty)."""
    assert session._store is not None and session.account_id is not None
    for delivery in await session._store.pending_after(session.account_id, 0, 100):
        yield delivery


async def test_the_in_memory_store_answers_add_message_now_as_add_message():
    store = MemoryStore()
    al = await store.create_account("al", "h", 0)
    bob = await store.create_account("bob", "h", 0)
    now = store.add_message_now(al, "one", 1, ("bob", "ghost"))
    later = await store.add_message(al, "two", 2, ("bob", "ghost"))
    assert now == (later.message_id - 1, later.conversation_id, {"bob": bob})
    assert later.recipients == {"bob": bob}
    assert store.add_message_now(al, "three", 3, ("ghost",)) == (0, 0, {})
    assert [d.body for d in await store.pending_after(bob, 0, 10)] == ["one", "two"]
    await store.delete_account(al, purge_sent=False, now_ms=4)
    assert store.add_message_now(al, "from beyond", 5, ("bob",)) == (0, 0, {})
