"""Rules 8-13: sending, pushing, acknowledging and replaying messages, on every transport."""

from __future__ import annotations

import time

import pytest

from core import InvalidArgument, LimitExceeded, NotLoggedIn, limits
from tests.conformance.helpers import receive, receive_bodies


async def test_rule08_send_needs_a_session(chat, names):
    client = await chat.client()
    with pytest.raises(NotLoggedIn):
        await client.send([names("x")], "hello")


async def test_rule08_unknown_recipients_are_ignored_even_after_they_sign_up(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    bob = await chat.login(names("bob"))
    result = await alice.send([names("bob"), names("ghost")], "hello both")
    assert result.unknown_recipients == (names("ghost"),)
    assert await receive_bodies(bob) == ["hello both"]

    ghost = await chat.user(names("ghost"))  # the name now exists, but nothing was kept for it
    await alice.send([names("ghost")], "marker")
    assert await receive_bodies(ghost) == ["marker"]


async def test_rule08_sending_to_yourself_is_allowed(chat, names):
    me = await chat.user(names("narcissus"))
    await me.send([names("narcissus")], "note to self")
    [message] = await receive(me)
    assert (message.sender, message.body) == (names("narcissus"), "note to self")


async def test_rule08_body_and_recipient_limits(chat, names):
    alice = await chat.user(names("alice"))
    bob = await chat.user(names("bob"))
    biggest = "b" * limits.MAX_BODY_BYTES
    await alice.send([names("bob")], biggest)
    assert await receive_bodies(bob) == [biggest]
    with pytest.raises(LimitExceeded):
        await alice.send([names("bob")], "b" * (limits.MAX_BODY_BYTES + 1))
    with pytest.raises(LimitExceeded):  # bytes, not characters: 3 bytes each
        await alice.send([names("bob")], "€" * (limits.MAX_BODY_BYTES // 3 + 1))
    with pytest.raises(InvalidArgument):
        await alice.send([names("bob")], "")
    with pytest.raises(InvalidArgument):
        await alice.send([], "to nobody")
    with pytest.raises(InvalidArgument):
        await alice.send([names("bob"), names("bob")], "twice")
    crowd = [f"r{i}_{names.tag}" for i in range(limits.MAX_RECIPIENTS + 1)]
    with pytest.raises(LimitExceeded):
        await alice.send(crowd, "too many")
    result = await alice.send(crowd[: limits.MAX_RECIPIENTS], "just enough (all unknown)")
    assert len(result.unknown_recipients) == limits.MAX_RECIPIENTS
    await alice.send([names("bob")], "still connected")  # errors did not end the session
    assert await receive_bodies(bob) == ["still connected"]


async def test_rule08_non_ascii_text_arrives_intact(chat, names):
    alice = await chat.user(names("alice"))
    bob = await chat.user(names("bob"))
    text = "Привет, мир 👋 — ça va? 你好\n\ttabs\x00and a NUL"
    await alice.send([names("bob")], text)
    assert await receive_bodies(bob) == [text]


async def test_rule09_reply_carries_an_increasing_id_and_the_server_time(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    before = time.time() * 1000
    first = await alice.send([names("bob")], "one")
    second = await alice.send([names("bob")], "two")
    after = time.time() * 1000
    assert 0 < first.message_id < second.message_id
    for result in (first, second):  # same machine, so the server clock is ours (1 s slack)
        assert before - 1000 <= result.sent_at_ms <= after + 1000


async def test_rule10_a_message_is_pushed_to_every_live_session(chat, names):
    await chat.user(names("bob"))
    sessions = [await chat.login(names("bob")) for _ in range(3)]
    alice = await chat.user(names("alice"))
    sent = await alice.send([names("bob")], "everywhere")
    for session in sessions:
        [message] = await receive(session)
        assert (message.message_id, message.sender, message.body, message.sent_at_ms) == (
            sent.message_id,
            names("alice"),
            "everywhere",
            sent.sent_at_ms,
        )


async def test_rule11_a_pushed_but_unacked_message_stays_pending(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    careless = await chat.login(names("bob"), auto_ack=False)
    await alice.send([names("bob")], "did you get it?")
    assert await receive_bodies(careless) == ["did you get it?"]  # shown, never acked
    await careless.close()
    again = await chat.client()
    assert (await again.login(names("bob"), "pw-secret-123")).pending == 1
    assert await receive_bodies(again) == ["did you get it?"]  # and acked this time
    await again.close()
    third = await chat.client()
    assert (await third.login(names("bob"), "pw-secret-123")).pending == 0


async def test_rule11_an_ack_from_any_session_delivers_for_the_user(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    silent = await chat.login(names("bob"), auto_ack=False)
    acking = await chat.login(names("bob"))
    await alice.send([names("bob")], "once is enough")
    assert await receive_bodies(acking) == ["once is enough"]
    assert await receive_bodies(silent) == ["once is enough"]
    await alice.send([names("bob")], "marker")  # acks travel in order with later traffic
    assert await receive_bodies(acking) == ["marker"]
    later = await chat.client()
    assert (await later.login(names("bob"), "pw-secret-123")).pending == 0


async def test_rule11_explicit_ack_with_auto_ack_off(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    bob = await chat.login(names("bob"), auto_ack=False)
    first = await alice.send([names("bob")], "first")
    await alice.send([names("bob")], "second")
    assert await receive_bodies(bob, 2) == ["first", "second"]
    await bob.ack([first.message_id])
    await bob.send([names("bob")], "marker")  # a round trip after the ack on the same session
    assert await receive_bodies(bob) == ["marker"]
    await bob.close()
    again = await chat.client(auto_ack=False)
    assert (await again.login(names("bob"), "pw-secret-123")).pending == 2  # "second" and "marker"
    assert await receive_bodies(again, 2) == ["second", "marker"]


async def test_rule12_pending_messages_arrive_at_login_oldest_first_with_the_count(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    carol = await chat.user(names("carol"))
    for i in range(3):
        await alice.send([names("bob")], f"alice {i}")
        await carol.send([names("bob")], f"carol {i}")
    bob = await chat.client()
    result = await bob.login(names("bob"), "pw-secret-123")
    assert result.pending == 6
    await alice.send([names("bob")], "newer")
    assert await receive_bodies(bob, 7) == [
        "alice 0",
        "carol 0",
        "alice 1",
        "carol 1",
        "alice 2",
        "carol 2",
        "newer",
    ]


async def test_rule12_a_large_backlog_arrives_whole_and_in_order(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    count = limits.BACKLOG_PAGE + 20  # spans two store pages
    for i in range(count):
        await alice.send([names("bob")], str(i))
    bob = await chat.client()
    assert (await bob.login(names("bob"), "pw-secret-123")).pending == count
    assert await receive_bodies(bob, count) == [str(i) for i in range(count)]


async def test_rule13_one_senders_messages_arrive_in_order(chat, names):
    alice = await chat.user(names("alice"))
    bob = await chat.user(names("bob"))
    for i in range(50):
        await alice.send([names("bob")], f"#{i}")
    received = await receive(bob, 50)
    assert [m.body for m in received] == [f"#{i}" for i in range(50)]
    ids = [m.message_id for m in received]
    assert ids == sorted(ids)
