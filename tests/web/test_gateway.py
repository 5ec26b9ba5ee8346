"""The gateway and its per-session live feed, without a browser: an in-process chat service
(loopback) behind the real Gateway, driven the way the Flask views drive it. History is the
server's: the gateway reads it, it keeps none."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import TYPE_CHECKING

import pytest

from core import AuthFailed, ChatClient, Delivery, UsernameTaken
from core.types import Conversation, ConversationPage, HistoryPage
from transports import registry
from ui.web import history
from ui.web.feed import Feed
from ui.web.gateway import ChatSession, Gateway, GatewayError, GatewayFull
from ui.web.loop import LoopThread
from wirechat.launch import ServerProcess

if TYPE_CHECKING:
    from tests.web.conftest import LocalGateway

PASSWORD = "pw-secret-1"


def wait_for_messages(chat: ChatSession, count: int, timeout: float = 10.0) -> list[str]:
    """Bodies in the feed once it holds ``count`` messages (it wakes on every change)."""
    seq, version = 0, 0
    bodies: list[str] = []
    for _ in range(100):
        changes = chat.feed.wait(seq, version, timeout)
        assert changes is not None, f"feed still short of {count} messages"
        bodies += [e.message.body for e in changes.events if e.message is not None]
        if len(bodies) >= count:
            return bodies
        seq = changes.events[-1].seq if changes.events else seq
        version = changes.snapshot_version
    raise AssertionError("too many wake-ups")


def wait_for_unread(chat: ChatSession, expected: dict[str, int], timeout: float = 10.0) -> None:
    """Until the feed's conversation list (the server's counts) shows ``expected`` unread
    per conversation (keyed by its participants, "kim,lee")."""
    seq, version, seen = 0, 0, None
    for _ in range(100):
        changes = chat.feed.wait(seq, version, timeout)
        assert changes is not None, f"unread counts stayed {seen}, not {expected}"
        seq = changes.events[-1].seq if changes.events else seq
        version = changes.snapshot_version
        if changes.snapshot is not None:
            seen = {
                history.peer_key(c.participants): c.unread
                for c in changes.snapshot.conversations
                if c.unread
            }
            if seen == expected:
                return
    raise AssertionError("too many wake-ups")


def wait_until_ended(chat: ChatSession, timeout: float = 10.0) -> str:
    """Why the session ended, once the gateway has noticed."""
    seq, version = 0, 0
    for _ in range(100):
        changes = chat.feed.wait(seq, version, timeout)
        assert changes is not None, "the session did not end"
        if changes.ended is not None:
            return changes.ended
        seq = changes.events[-1].seq if changes.events else seq
        version = changes.snapshot_version
    raise AssertionError("too many wake-ups")


def open_user(local: LocalGateway, name: str) -> ChatClient:
    async def signup() -> ChatClient:
        client = local.client()
        await client.connect()
        await client.signup(name, PASSWORD)
        return client

    return local.run(signup())


def test_a_failed_login_does_not_spoil_the_next_attempt(local_gateway: LocalGateway) -> None:
    gateway = local_gateway.gateway
    chat, _ = gateway.signup("ann", PASSWORD)
    gateway.logout(chat)
    with pytest.raises(AuthFailed):
        gateway.login("ann", "wrong")
    with pytest.raises(UsernameTaken):
        gateway.signup("ann", PASSWORD)
    chat, result = gateway.login("ann", PASSWORD)  # a fresh connection each time (Rule 4)
    assert result.username == "ann"
    assert local_gateway.service.live_sessions("ann") == 1
    assert gateway.live_sessions == 1


def test_logout_closes_the_connection_and_later_messages_wait(local_gateway: LocalGateway) -> None:
    gateway = local_gateway.gateway
    chat, _ = gateway.signup("bea", PASSWORD)
    gateway.logout(chat)
    assert local_gateway.service.live_sessions("bea") == 0
    assert gateway.get(chat.key) is None
    assert gateway.signed_out_reason(chat.key) == "you logged out"

    sender = open_user(local_gateway, "cal")
    local_gateway.run(sender.send(["bea"], "while you were out"))
    chat, result = gateway.login("bea", PASSWORD)
    assert result.pending == 1
    assert wait_for_messages(chat, 1) == ["while you were out"]
    wait_for_unread(chat, {"cal": 1})
    local_gateway.run(sender.close())


def test_idle_sessions_are_signed_out_and_their_connection_closed(
    local_gateway: LocalGateway,
) -> None:
    gateway, clock = local_gateway.gateway, local_gateway.clock
    idle, _ = gateway.signup("dee", PASSWORD)
    watching, _ = gateway.signup("eve", PASSWORD)
    assert gateway.open_stream(watching)  # eve has a page open
    clock.now += gateway.limits.idle_timeout + 1

    assert gateway.expire_idle() == 1
    assert gateway.get(idle.key) is None
    assert "without activity" in (gateway.signed_out_reason(idle.key) or "")
    assert idle.feed.ended is not None
    assert local_gateway.service.live_sessions("dee") == 0
    assert gateway.get(watching.key) is watching
    assert local_gateway.service.live_sessions("eve") == 1


@pytest.mark.limits(max_sessions=1)
def test_the_number_of_signed_in_sessions_is_bounded(local_gateway: LocalGateway) -> None:
    gateway = local_gateway.gateway
    chat, _ = gateway.signup("fay", PASSWORD)
    with pytest.raises(GatewayFull, match="this web gateway is full"):
        gateway.signup("gil", PASSWORD)
    gateway.logout(chat)
    gateway.signup("gil", PASSWORD)


@pytest.mark.limits(max_sessions=10, max_sessions_per_address=2)
def test_one_address_cannot_fill_the_gateway(local_gateway: LocalGateway) -> None:
    gateway = local_gateway.gateway
    first, _ = gateway.signup("hal", PASSWORD, "203.0.113.7")
    gateway.signup("ida", PASSWORD, "203.0.113.7")
    with pytest.raises(GatewayFull, match="your address already has 2 signed-in sessions"):
        gateway.signup("jon", PASSWORD, "203.0.113.7")
    with pytest.raises(GatewayFull, match="per address"):
        gateway.login("hal", PASSWORD, "203.0.113.7")
    gateway.signup("jon", PASSWORD, "198.51.100.9")  # another address still gets in
    gateway.logout(first)  # a freed place is this address's again
    gateway.login("hal", PASSWORD, "203.0.113.7")


@pytest.mark.limits(max_streams=2)
def test_a_new_page_replaces_the_oldest_stream_past_the_limit(
    local_gateway: LocalGateway,
) -> None:
    gateway = local_gateway.gateway
    chat, _ = gateway.signup("hal", PASSWORD)
    first, second = gateway.open_stream(chat), gateway.open_stream(chat)
    seq = chat.feed.last_seq
    woke: list[object] = []

    def first_page_waits() -> None:  # what the first page's stream does between messages
        woke.append(chat.feed.wait(seq, 2**62, 30.0, stop=lambda: first.replaced))

    waiter = threading.Thread(target=first_page_waits)
    waiter.start()
    third = gateway.open_stream(chat)  # a third page: the first stream is told to end
    waiter.join(10.0)
    assert not waiter.is_alive() and woke == [None]
    assert first.replaced and not second.replaced and not third.replaced
    assert chat.streams == [second, third]
    gateway.close_stream(chat, first)  # its response closes afterwards: harmless
    assert chat.streams == [second, third]


def test_deleting_the_account_signs_out_its_other_sessions(local_gateway: LocalGateway) -> None:
    gateway = local_gateway.gateway
    phone, _ = gateway.signup("ivy", PASSWORD)
    laptop, _ = gateway.login("ivy", PASSWORD)
    gateway.delete_account(phone, PASSWORD)
    assert gateway.get(phone.key) is None
    # The laptop's connection is ended by the server; the pump notices and signs it out.
    assert wait_until_ended(laptop) == "the account was deleted"
    assert gateway.get(laptop.key) is None
    with pytest.raises(AuthFailed):
        gateway.login("ivy", PASSWORD)


def test_a_group_message_is_one_conversation_and_history_is_the_servers(
    local_gateway: LocalGateway,
) -> None:
    gateway = local_gateway.gateway
    for name in ("kit", "lou"):
        open_user(local_gateway, name)
    chat, _ = gateway.signup("jan", PASSWORD)
    result = gateway.send(chat, ["kit", "lou", "nobody"], "hello all")
    assert result.unknown_recipients == ("nobody",)
    assert result.conversation_id
    # This browser's other tabs learn of it through the feed, as a message of mine.
    (event,) = chat.feed.wait(0, 2**62, 5.0).events  # type: ignore[union-attr]
    assert event.mine and event.message is not None
    assert event.message.participants == ("kit", "lou")
    # The gateway keeps nothing: a new browser session of jan reads it from the server.
    gateway.logout(chat)
    chat, _ = gateway.login("jan", PASSWORD)
    page, conversations = gateway.open_thread(chat, participants=["lou", "kit"])
    assert page.conversation_id == result.conversation_id
    assert [m.body for m in page.messages] == ["hello all"]
    assert [c.participants for c in conversations.conversations] == [("kit", "lou")]


def test_reading_a_thread_marks_it_read_and_other_devices_agree(
    local_gateway: LocalGateway,
) -> None:
    gateway = local_gateway.gateway
    sender = open_user(local_gateway, "max")
    phone, _ = gateway.signup("nia", PASSWORD)
    laptop, _ = gateway.login("nia", PASSWORD)
    for body in ("one", "two"):
        local_gateway.run(sender.send(["nia"], body))
    wait_for_unread(laptop, {"max": 2})
    page, conversations = gateway.open_thread(phone, participants=["max"])
    assert [m.body for m in page.messages] == ["two", "one"]  # newest first
    assert conversations.conversations[0].unread == 0
    wait_for_unread(laptop, {})  # the server told the laptop (ReadMarker, Rule 22)
    local_gateway.run(sender.close())


def test_delete_for_everyone_reaches_every_feed(local_gateway: LocalGateway) -> None:
    gateway = local_gateway.gateway
    oli, _ = gateway.signup("oli", PASSWORD)
    pat, _ = gateway.signup("pat", PASSWORD)
    result = gateway.send(oli, ["pat"], "oops")
    assert wait_for_messages(pat, 1) == ["oops"]
    with pytest.raises(GatewayError, match="only the sender"):
        gateway.delete_messages(pat, [result.message_id], True)
    gateway.delete_messages(oli, [result.message_id], True)
    for chat in (oli, pat):
        seq = 0
        for _ in range(20):
            changes = chat.feed.wait(seq, 2**62, 5.0)
            assert changes is not None, "no deletion reached the feed"
            if any(e.deleted == (result.message_id,) for e in changes.events):
                break
            seq = changes.events[-1].seq
        page = gateway.history(chat, conversation_id=result.conversation_id)
        assert page.messages == ()


def delivery(message_id: int, sender: str, body: str = "x", **extra: object) -> Delivery:
    return Delivery(message_id, sender, body, 1_700_000_000_000 + message_id, **extra)  # type: ignore[arg-type]


def test_the_feed_tells_a_stream_that_fell_too_far_behind_to_reload() -> None:
    feed = Feed(max_events=3)
    for message_id in range(1, 6):
        feed.message(delivery(message_id, "ann"), mine=False)
    behind = feed.wait(1, 0, 0.0)
    assert behind is not None and behind.gap
    current = feed.wait(2, 0, 0.0)
    assert current is not None and not current.gap
    assert [e.message.message_id for e in current.events if e.message] == [3, 4, 5]
    assert feed.wait(5, 0, 0.01) is None  # nothing new
    feed.end("you logged out")
    final = feed.wait(5, 0, 1.0)
    assert final is not None and final.events == () and final.ended == "you logged out"


def test_a_deleted_account_is_marked_and_its_name_never_continues_the_thread() -> None:
    from datetime import UTC

    old = delivery(7, "bob", "from the old bob", sender_deleted=True, participants=("bob",))
    row = history.message_row(old, "me", UTC)
    assert row.who == "bob (deleted account)" and not row.mine
    page = HistoryPage(3, ("bob",), (old,), False, deleted_participants=("bob",))
    thread = history.thread(page, "me", UTC)
    assert thread.title == "bob (deleted account)"
    assert thread.reply_to == ()  # a reply would reach the name's new owner
    assert "deleted" in thread.notices[0]
    # The new owner's (empty) conversation says it is someone else.
    old_conversation = Conversation(3, ("bob",), old, 0, 7, deleted_participants=("bob",))
    fresh = history.thread(
        HistoryPage(0, ("bob",), (), False), "me", UTC, others=[old_conversation]
    )
    assert fresh.reply_to == ("bob",)
    assert "new account" in fresh.notices[0]
    rows = history.sidebar(ConversationPage((old_conversation,), False), "me", UTC)
    assert rows[0].label == "bob (deleted account)"


def test_a_wrong_or_dead_chat_server_port_is_explained(wire_server: ServerProcess) -> None:
    """What the login page shows when the gateway's --server is wrong."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = ("127.0.0.1", int(sock.getsockname()[1]))
    cases = [
        (wire_server.addresses["grpc"], "speaks HTTP/2 (a gRPC server), not the custom protocol"),
        (closed, "nothing is listening at its address. Is it running (`make server`)"),
    ]
    loop = LoopThread().start()
    try:
        for address, expected in cases:
            gateway = Gateway(lambda a=address: registry.get("custom").open_client(a), loop)
            with pytest.raises(GatewayError) as caught:
                gateway.login("someone", PASSWORD)
            message = str(caught.value)
            assert message.startswith("cannot reach the chat server: ") and expected in message
            assert "Errno" not in message and "Connect call failed" not in message
    finally:
        loop.stop()


def test_an_open_page_waits_without_a_thread_and_a_closed_one_leaves_nothing_behind() -> None:
    """Feed.wait_async (what every open page's event stream awaits): woken by a change made
    on another thread; a page that goes away mid-wait leaves no waiter behind."""
    feed = Feed()

    async def scenario() -> None:
        waiting = asyncio.create_task(feed.wait_async(0, 0, 10.0))
        await asyncio.sleep(0)  # let it register
        writer = threading.Thread(target=lambda: feed.message(delivery(1, "ann"), mine=False))
        writer.start()
        changes = await waiting
        writer.join()
        assert changes is not None
        assert [e.message.message_id for e in changes.events if e.message] == [1]
        gone = asyncio.create_task(feed.wait_async(1, 0, 10.0))
        await asyncio.sleep(0)
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        assert feed._waiters == []
        assert await feed.wait_async(1, 0, 0.01) is None  # nothing new: the timeout
        feed.end("you logged out")
        ended = await feed.wait_async(1, 0, 10.0)
        assert ended is not None and ended.ended == "you logged out"

    asyncio.run(scenario())
