"""Rules 19-25: identity, history, conversations, read state, message deletion and "sent by
you" copies, written against the ChatClient API so that they run on every transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core import ChatClient, DeletedSenderPolicy, Forbidden, NotLoggedIn
from core.types import Delivery, MessagesDeleted, ReadMarker, SentCopy, SessionEvent
from tests.conformance.conftest import Chat, make_loopback_service
from tests.conformance.helpers import WAIT, receive, receive_bodies
from wirechat.launch import ServerProcess


@pytest.fixture
async def keep_chat(transport: str, tmp_path, test_tls) -> AsyncIterator[Chat]:
    """A server started with --deleted-sender keep (in-process for loopback)."""
    server = None
    if transport == "loopback":
        address: object = make_loopback_service(deleted_sender=DeletedSenderPolicy.KEEP)
    else:
        server = ServerProcess(
            [transport],
            tmp_path / "keep.db",
            extra_args=["--deleted-sender", "keep"],
            tls=test_tls.server if test_tls else None,
        ).start()
        address = server.addresses[transport]
    chats = Chat(transport, address, test_tls)
    try:
        yield chats
    finally:
        await chats.aclose()
        if server is not None:
            server.stop()


async def next_of(client: ChatClient, kind: type, limit: int = 20) -> SessionEvent:
    """The next event of ``kind`` on ``client.events()`` (skipping others, a bounded number)."""
    for _ in range(limit):
        event = await client.next_event(WAIT)
        if isinstance(event, kind):
            return event
    raise AssertionError(f"no {kind.__name__} among the next {limit} events")


async def test_rule19_a_re_registered_name_inherits_nothing_and_is_never_the_old_sender(
    keep_chat, names
):
    chat = keep_chat
    alice = await chat.user(names("alice"))
    old_bob = await chat.user(names("bob"))
    await old_bob.send([names("alice")], "delivered from the old bob")
    assert await receive_bodies(alice) == ["delivered from the old bob"]
    await alice.send([names("bob")], "to the old bob")
    await alice.close()
    await old_bob.send([names("alice")], "pending from the old bob")
    await old_bob.delete_account(names("bob"), "pw-secret-123")

    new_bob = await chat.user(names("bob"))
    assert (await new_bob.list_conversations()).conversations == ()
    assert (await new_bob.read_history([names("alice")])).messages == ()

    # The kept message arrives marked as from a deleted account, never as from the new bob.
    alice = await chat.login(names("alice"))
    [kept] = await receive(alice)
    assert (kept.body, kept.sender, kept.sender_deleted) == (
        "pending from the old bob",
        names("bob"),
        True,
    )
    await new_bob.send([names("alice")], "hi, I am the new bob")
    [fresh] = await receive(alice)
    assert fresh.sender_deleted is False
    assert fresh.conversation_id != kept.conversation_id  # a new account, a new conversation

    listed = (await alice.list_conversations()).conversations
    old = next(c for c in listed if c.conversation_id == kept.conversation_id)
    assert old.deleted_participants == (names("bob"),)
    by_name = await alice.read_history([names("bob")])  # the name now means the new bob
    assert [m.body for m in by_name.messages] == ["hi, I am the new bob"]
    by_id = await alice.read_history(conversation_id=kept.conversation_id)
    assert by_id.deleted_participants == (names("bob"),)
    assert all(m.sender_deleted for m in by_id.messages if m.sender == names("bob"))


async def test_rule20_history_keeps_what_you_sent_and_received_across_logins(chat, names):
    alice = await chat.user(names("alice"))
    bob = await chat.user(names("bob"))
    await alice.send([names("bob")], "one")
    await bob.send([names("alice")], "two")
    await alice.send([names("bob")], "three")
    assert await receive_bodies(bob, 2) == ["one", "three"]
    await alice.logout()
    await alice.login(names("alice"), "pw-secret-123")
    for client, other in ((alice, "bob"), (bob, "alice")):
        page = await client.read_history([names(other)])
        assert [m.body for m in page.messages] == ["three", "two", "one"]
        assert page.participants == (names(other),)

    # History is per user: deleting from mine never touches yours.
    mine = (await bob.read_history([names("alice")])).messages
    await bob.delete_messages([m.message_id for m in mine])
    assert (await bob.read_history([names("alice")])).messages == ()
    assert len((await alice.read_history([names("bob")])).messages) == 3


async def test_rule21_a_group_message_looks_like_one_and_reply_to_all_stays_in_it(chat, names):
    alice = await chat.user(names("alice"))
    bob = await chat.user(names("bob"))
    carol = await chat.user(names("carol"))
    sent = await alice.send([names("bob"), names("carol")], "hello both")
    [to_bob] = await receive(bob)
    assert to_bob.participants == (names("alice"), names("carol"))
    assert to_bob.conversation_id == sent.conversation_id != 0
    reply = await bob.send(list(to_bob.participants), "hi all")  # reply to all
    assert reply.conversation_id == sent.conversation_id
    assert [m.body for m in await receive(carol, 2)] == ["hello both", "hi all"]
    page = await carol.read_history([names("alice"), names("bob")])
    assert [m.body for m in page.messages] == ["hi all", "hello both"]
    assert page.conversation_id == sent.conversation_id


async def test_rule21_conversations_and_history_are_paged_newest_first(chat, names):
    me = await chat.user(names("me"))
    friends = [names(f"f{i}") for i in range(3)]
    for friend in friends:
        await chat.user(friend)
    for i, friend in enumerate(friends):
        await me.send([friend], f"to {i}")
    first = await me.list_conversations(limit=2)
    assert [c.participants for c in first.conversations] == [(friends[2],), (friends[1],)]
    assert first.more
    cursor = first.conversations[-1].last_message.message_id
    rest = await me.list_conversations(before_id=cursor, limit=2)
    assert [c.participants for c in rest.conversations] == [(friends[0],)]
    assert not rest.more

    for i in range(5):
        await me.send([friends[0]], f"m{i}")
    seen: list[str] = []
    before = 0
    for _ in range(10):  # bounded: 6 messages, 2 a page
        page = await me.read_history([friends[0]], before_id=before, limit=2)
        seen += [m.body for m in page.messages]
        if not page.more:
            break
        before = page.messages[-1].message_id
    assert seen == ["m4", "m3", "m2", "m1", "m0", "to 0"]


async def test_rule21_history_and_conversations_need_a_session(chat, names):
    anonymous = await chat.client()
    with pytest.raises(NotLoggedIn):
        await anonymous.list_conversations()
    with pytest.raises(NotLoggedIn):
        await anonymous.read_history([names("bob")])
    with pytest.raises(NotLoggedIn):
        await anonymous.mark_read(1, 1)
    with pytest.raises(NotLoggedIn):
        await anonymous.delete_messages([1])


async def test_rule22_read_state_reaches_other_devices_and_survives_a_new_login(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    laptop = await chat.login(names("bob"))
    phone = await chat.login(names("bob"), auto_ack=False)
    for body in ("one", "two", "three"):
        await alice.send([names("bob")], body)
    got = await receive(laptop, 3)
    [listed] = (await laptop.list_conversations()).conversations
    assert listed.unread == 3
    marker = await laptop.mark_read(got[1].conversation_id, got[1].message_id)
    assert (marker.up_to_id, marker.unread) == (got[1].message_id, 1)
    pushed = await next_of(phone, ReadMarker)
    assert pushed == marker

    later = await chat.login(names("bob"))
    [listed] = (await later.list_conversations()).conversations
    assert (listed.unread, listed.read_up_to) == (1, got[1].message_id)


async def test_rule22_read_is_not_delivered(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    reader = await chat.login(names("bob"), auto_ack=False)
    await alice.send([names("bob")], "seen but never acked")
    [message] = await receive(reader)
    await reader.mark_read(message.conversation_id, message.message_id)
    await reader.close()
    again = await chat.client()
    assert (await again.login(names("bob"), "pw-secret-123")).pending == 1  # Rules 11-12 unchanged


async def test_rule23_the_sender_deletes_for_everyone_and_every_live_session_is_told(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    laptop = await chat.login(names("bob"))
    phone = await chat.login(names("bob"))
    sent = await alice.send([names("bob")], "I regret this")
    for device in (laptop, phone):
        delivered = await next_of(device, Delivery)
        assert isinstance(delivered, Delivery) and delivered.message_id == sent.message_id
    await alice.delete_messages([sent.message_id], for_everyone=True)
    for device in (laptop, phone):
        gone = await next_of(device, MessagesDeleted)
        assert isinstance(gone, MessagesDeleted) and gone.message_ids == (sent.message_id,)
    for client, other in ((alice, "bob"), (laptop, "alice")):
        assert (await client.read_history([names(other)])).messages == ()


async def test_rule23_a_pending_message_deleted_for_everyone_is_never_delivered(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    sent = await alice.send([names("bob")], "never mind")
    await alice.delete_messages([sent.message_id], for_everyone=True)
    bob = await chat.client()
    assert (await bob.login(names("bob"), "pw-secret-123")).pending == 0
    await alice.send([names("bob")], "marker")
    assert await receive_bodies(bob) == ["marker"]


async def test_rule23_only_the_sender_deletes_for_everyone_anyone_deletes_for_themselves(
    chat, names
):
    alice = await chat.user(names("alice"))
    bob = await chat.user(names("bob"))
    sent = await alice.send([names("bob")], "keep this")
    await receive(bob)
    with pytest.raises(Forbidden):
        await bob.delete_messages([sent.message_id], for_everyone=True)
    assert len((await alice.read_history([names("bob")])).messages) == 1
    await bob.delete_messages([sent.message_id])  # from my own history: allowed
    assert (await bob.read_history([names("alice")])).messages == ()
    assert len((await alice.read_history([names("bob")])).messages) == 1


async def test_rule24_what_you_send_reaches_your_other_devices_as_sent_by_you(chat, names):
    laptop = await chat.user(names("alice"))
    phone = await chat.login(names("alice"))
    await chat.user(names("bob"))
    await chat.user(names("carol"))
    sent = await laptop.send([names("bob"), names("carol")], "from my laptop")
    copy = await next_of(phone, SentCopy)
    assert isinstance(copy, SentCopy)
    message = copy.message
    assert (message.message_id, message.sender, message.body) == (
        sent.message_id,
        names("alice"),
        "from my laptop",
    )
    assert message.participants == (names("bob"), names("carol"))
    assert message.conversation_id == sent.conversation_id
    # The laptop itself gets no copy of its own send: the next thing it sees is a reply.
    bob = await chat.login(names("bob"))
    await bob.send([names("alice")], "reply")
    first = await laptop.next_event(WAIT)
    assert isinstance(first, Delivery) and first.body == "reply"


async def test_rule25_a_deleted_accounts_history_goes_and_what_it_delivered_stays_marked(
    chat, names
):
    alice = await chat.user(names("alice"))
    bob = await chat.user(names("bob"))
    await alice.send([names("bob")], "delivered before I left")
    assert await receive_bodies(bob) == ["delivered before I left"]
    await bob.send([names("alice")], "to alice")
    await receive(alice)
    await alice.delete_account(names("alice"), "pw-secret-123")

    page = await bob.read_history([names("alice")])
    assert page.messages == ()  # the name no longer names anyone bob talks to
    [old] = (await bob.list_conversations()).conversations
    assert old.deleted_participants == (names("alice"),)
    by_id = await bob.read_history(conversation_id=old.conversation_id)
    from_alice = [m for m in by_id.messages if m.sender == names("alice")]
    assert [(m.body, m.sender_deleted) for m in from_alice] == [("delivered before I left", True)]

    new_alice = await chat.user(names("alice"))
    assert (await new_alice.list_conversations()).conversations == ()
