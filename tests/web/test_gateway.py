"""The gateway and its per-session history, without a browser: an in-process chat service
(loopback) behind the real Gateway, driven the way the Flask views drive it."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from core import AuthFailed, ChatClient, Delivery, SendResult, UsernameTaken
from ui.web.gateway import ChatSession, GatewayError
from ui.web.history import History

if TYPE_CHECKING:
    from tests.web.conftest import LocalGateway

PASSWORD = "pw-123"


def wait_for_entries(chat: ChatSession, count: int, timeout: float = 10.0) -> list[str]:
    """Bodies in the history once it holds ``count`` messages (it wakes on every change)."""
    history, version = chat.history, -1
    for _ in range(100):
        changes = history.wait(version, 0, timeout)
        assert changes is not None, f"history still short of {count} messages"
        if len(changes.entries) >= count:
            return [entry.body for entry in changes.entries]
        version = changes.version
    raise AssertionError("too many wake-ups")


def wait_until_ended(chat: ChatSession, timeout: float = 10.0) -> str:
    """Why the session ended, once the gateway has noticed."""
    version = -1
    for _ in range(100):
        changes = chat.history.wait(version, 0, timeout)
        assert changes is not None, "the session did not end"
        if changes.ended is not None:
            return changes.ended
        version = changes.version
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
    assert wait_for_entries(chat, 1) == ["while you were out"]
    assert chat.history.unread() == {"cal": 1}
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
    assert idle.history.ended is not None
    assert local_gateway.service.live_sessions("dee") == 0
    assert gateway.get(watching.key) is watching
    assert local_gateway.service.live_sessions("eve") == 1


@pytest.mark.limits(max_sessions=1)
def test_the_number_of_signed_in_sessions_is_bounded(local_gateway: LocalGateway) -> None:
    gateway = local_gateway.gateway
    chat, _ = gateway.signup("fay", PASSWORD)
    with pytest.raises(GatewayError, match="too many people"):
        gateway.signup("gil", PASSWORD)
    gateway.logout(chat)
    gateway.signup("gil", PASSWORD)


@pytest.mark.limits(max_streams=2)
def test_a_new_page_replaces_the_oldest_stream_past_the_limit(
    local_gateway: LocalGateway,
) -> None:
    gateway = local_gateway.gateway
    chat, _ = gateway.signup("hal", PASSWORD)
    first, second = gateway.open_stream(chat), gateway.open_stream(chat)
    current = chat.history.wait(-1, 0, 0.0)
    assert current is not None
    woke: list[object] = []

    def first_page_waits() -> None:  # what the first page's stream does between messages
        woke.append(chat.history.wait(current.version, 0, 30.0, stop=lambda: first.replaced))

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
    gateway.delete_account(phone)
    assert gateway.get(phone.key) is None
    # The laptop's connection is ended by the server; the pump notices and signs it out.
    assert wait_until_ended(laptop) == "the account was deleted"
    assert gateway.get(laptop.key) is None
    with pytest.raises(AuthFailed):
        gateway.login("ivy", PASSWORD)


def test_sent_messages_join_each_recipients_conversation(local_gateway: LocalGateway) -> None:
    gateway = local_gateway.gateway
    for name in ("kit", "lou"):
        open_user(local_gateway, name)
    chat, _ = gateway.signup("jan", PASSWORD)
    result, entry = gateway.send(chat, ["kit", "lou", "nobody", "jan"], "hello all")
    assert result.unknown_recipients == ("nobody",)
    assert entry is not None and entry.peers == ("kit", "lou")
    assert entry.recipients == ("kit", "lou", "jan")
    # The copy to ourselves comes back as an incoming message, in the note-to-self thread.
    assert wait_for_entries(chat, 2) == ["hello all", "hello all"]
    assert [e.incoming for e in chat.history.thread("jan")] == [True]
    # (the copy to ourselves may be recorded before or after the sent message)
    assert sorted(row.peer for row in chat.history.conversations()) == ["jan", "kit", "lou"]
    assert chat.history.unread() == {}


def delivery(message_id: int, sender: str, body: str = "x") -> Delivery:
    return Delivery(message_id, sender, body, 1_700_000_000_000 + message_id)


def test_history_is_bounded_and_unread_counts_follow() -> None:
    history = History("me", max_entries=3, max_bytes=10_000)
    for message_id in range(1, 5):
        history.add_incoming(delivery(message_id, "ann"))
    history.add_incoming(delivery(5, "bob"))
    assert [e.message_id for e in history.thread("ann")] == [3, 4]
    assert history.unread() == {"ann": 2, "bob": 1}  # never more than what is kept
    history.add_incoming(delivery(6, "bob"))
    history.add_incoming(delivery(7, "bob"))
    assert history.thread("ann") == []
    assert history.unread() == {"bob": 3}
    assert [row.peer for row in history.conversations()] == ["bob"]


def test_history_is_bounded_in_bytes() -> None:
    history = History("me", max_entries=100, max_bytes=3 * (1000 + 64))
    for message_id in range(1, 6):
        history.add_incoming(delivery(message_id, "ann", "x" * 1000))
    assert [e.message_id for e in history.thread("ann")] == [3, 4, 5]
    history.add_incoming(delivery(6, "ann", "y" * 50_000))  # one huge message is still kept
    assert [e.message_id for e in history.thread("ann")] == [6]


def test_history_wakes_waiters_and_tells_them_the_end() -> None:
    history = History("me")
    first = history.wait(-1, 0, 0.0)  # the current state at once
    assert first is not None and first.entries == () and first.ended is None
    assert history.wait(first.version, 0, 0.01) is None  # nothing new
    history.add_outgoing(("ann",), "hi", SendResult(9, 1_700_000_000_000))
    history.mark_read("ann")  # nothing unread: no change
    changes = history.wait(first.version, 0, 1.0)
    assert changes is not None and [e.body for e in changes.entries] == ["hi"]
    history.end("you logged out")
    final = history.wait(changes.version, changes.entries[-1].seq, 1.0)
    assert final is not None and final.entries == () and final.ended == "you logged out"
