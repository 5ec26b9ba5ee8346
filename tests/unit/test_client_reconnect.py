"""core.reconnect over the in-process chat core, with connections this test can break.

The real thing (a server child killed with SIGKILL and restarted on its port, every transport)
is tests/integration/test_restart_resume.py; here each rule is shown quickly and exactly.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import pytest

from core import ChatService, HashCost, SqliteStore
from core import requests as rq
from core.client import ChatClient, ClientEvents
from core.loopback import LoopbackTransport
from core.reconnect import (
    Backoff,
    ConnectionChange,
    ConnectionInterrupted,
    GaveUp,
    Reconnecting,
    Resumed,
    reconnecting,
)
from core.types import Delivery

PASSWORD = "pw-secret-1"
T = TypeVar("T")
R = TypeVar("R")
FAST = Backoff(first=0.01, cap=0.05, give_up_after=2.0)


class Server:
    """A ChatService whose loopback connections can all be broken (``kill``) and refused
    (``down``); ``lose_acks`` makes acks vanish as if the server died before reading them."""

    def __init__(self, service: ChatService) -> None:
        self.service = service
        self.down = False
        self.lose_acks = False
        self.pushed = asyncio.Event()  # a delivery reached a client's transport
        self.connections: list[Breakable] = []

    def open_client(self, *, always: bool = False) -> ChatClient:
        """A client; ``always``: it connects even while the server is ``down`` (to others)."""
        return ChatClient(Breakable(self, always))

    def kill(self) -> None:
        for connection in self.connections:
            connection.brk()
        self.connections.clear()


class Breakable(LoopbackTransport):
    def __init__(self, server: Server, always: bool) -> None:
        super().__init__(server.service)
        self.server = server
        self.always = always

    async def connect(self, events: ClientEvents) -> None:
        if self.server.down and not self.always:
            raise ConnectionRefusedError(111, "Connection refused")
        await super().connect(_Spy(events, self.server.pushed))
        self.server.connections.append(self)

    async def request(self, request: rq.Request[R]) -> R:
        if isinstance(request, rq.Ack) and self.server.lose_acks:
            return None  # type: ignore[return-value]
        return await super().request(request)

    def brk(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            self.server.service.close_session(session)
        if self._pump is not None:
            self._pump.cancel()
        if self._events is not None:
            self._events.connection_lost("the connection broke: reset by peer")


class _Spy:
    """Passes a connection's events on, noting each delivery."""

    def __init__(self, events: ClientEvents, pushed: asyncio.Event) -> None:
        self.events = events
        self.pushed = pushed
        self.notified = events.notified
        self.session_ended = events.session_ended
        self.connection_lost = events.connection_lost

    def delivered(self, delivery: Delivery) -> None:
        self.events.delivered(delivery)
        self.pushed.set()


@pytest.fixture
def server(tmp_path):
    return Server(ChatService(SqliteStore(tmp_path / "chat.db"), hash_cost=HashCost.LOW))


async def signed_up(server: Server, name: str) -> ChatClient:
    client = server.open_client()
    await client.connect()
    await client.signup(name, PASSWORD)
    return client


async def resilient(
    server: Server, name: str, changes: Recorder, backoff: Backoff = FAST
) -> ChatClient:
    client = reconnecting(server.open_client, backoff=backoff, on_change=changes)
    await client.connect()
    await client.login(name, PASSWORD)
    return client


class Recorder:
    """The ``on_change`` of a client: keeps every change; ``first(kind)`` waits for one."""

    def __init__(self) -> None:
        self.changes: list[ConnectionChange] = []
        self._new = asyncio.Event()

    def __call__(self, change: ConnectionChange) -> None:
        self.changes.append(change)
        self._new.set()

    def of(self, kind: type[T]) -> list[T]:
        return [c for c in self.changes if isinstance(c, kind)]

    async def first(self, kind: type[T], timeout: float = 5.0) -> T:
        async with asyncio.timeout(timeout):
            while not self.of(kind):
                self._new.clear()
                await self._new.wait()
        return self.of(kind)[0]


async def test_a_lost_connection_is_resumed_and_what_came_meanwhile_arrives_once(server):
    bob = await signed_up(server, "bob")
    await (await signed_up(server, "alice")).close()
    changes = Recorder()
    alice = await resilient(server, "alice", changes)
    await bob.send(["alice"], "before")
    assert (await alice.next_message(5)).body == "before"

    server.down = True
    server.kill()
    await changes.first(Reconnecting)
    # bob's own connection broke too; he comes back with his password
    bob = await signed_up_again(server, "bob")
    await bob.send(["alice"], "while away")
    server.down = False
    await changes.first(Resumed)

    assert (await alice.next_message(5)).body == "while away"
    await bob.send(["alice"], "after")
    assert (await alice.next_message(5)).body == "after"  # nothing repeated in between
    resumed = changes.of(Resumed)
    assert resumed == [Resumed(pending=1, attempts=resumed[0].attempts)]
    assert alice.logged_in and alice.closed_reason is None
    await alice.close()
    assert not changes.of(GaveUp)


async def signed_up_again(server: Server, name: str) -> ChatClient:
    """Log in while the server is down to everyone else."""
    client = server.open_client(always=True)
    await client.connect()
    await client.login(name, PASSWORD)
    return client


async def test_a_message_whose_ack_was_lost_is_not_shown_twice_and_is_acked_again(server):
    bob = await signed_up(server, "bob")
    await (await signed_up(server, "alice")).close()
    changes = Recorder()
    alice = await resilient(server, "alice", changes)
    server.lose_acks = True  # the server dies before it reads the ack
    await bob.send(["alice"], "hello")
    shown = [await alice.next_message(5)]
    server.kill()
    server.lose_acks = False
    await changes.first(Resumed)
    assert [c.pending for c in changes.of(Resumed)] == [1]  # pushed again...
    bob = await signed_up_again(server, "bob")
    await bob.send(["alice"], "next")
    shown.append(await alice.next_message(5))
    assert [m.body for m in shown] == ["hello", "next"]  # ... and not shown again
    await alice.close()
    # ... but acked again: a new login finds nothing waiting
    again = server.open_client()
    await again.connect()
    assert (await again.login("alice", PASSWORD)).pending == 0
    await again.close()


async def test_requests_fail_clearly_while_reconnecting_and_never_wait(server):
    await (await signed_up(server, "alice")).close()
    changes = Recorder()
    alice = await resilient(server, "alice", changes)
    server.down = True
    server.kill()
    with pytest.raises(ConnectionInterrupted, match=r"\(reconnecting\), so this was not sent"):
        await alice.send(["alice"], "hello?")
    assert alice.logged_in  # still the same session, as far as the application knows
    server.down = False
    await changes.first(Resumed)
    assert (await alice.send(["alice"], "hello!")).message_id > 0
    await alice.close()


async def test_a_refused_token_ends_the_session_and_says_log_in_again(server, tmp_path):
    await (await signed_up(server, "alice")).close()
    changes = Recorder()
    alice = await resilient(server, "alice", changes)
    # The server comes back having forgotten every token (a new database).
    server.kill()
    server.service = ChatService(SqliteStore(tmp_path / "other.db"), hash_cost=HashCost.LOW)
    events = [e async for e in alice.events()]  # ends
    assert events == []
    gave_up = changes.of(GaveUp)
    assert len(gave_up) == 1 and gave_up[0].login_needed
    assert "could not be resumed" in (alice.closed_reason or "")
    assert not alice.logged_in


async def test_it_gives_up_when_the_server_stays_away(server):
    await (await signed_up(server, "alice")).close()
    changes = Recorder()
    patient = Backoff(first=0.01, cap=0.02, give_up_after=0.3)
    alice = await resilient(server, "alice", changes, patient)
    server.down = True
    server.kill()
    async with asyncio.timeout(10):
        assert [e async for e in alice.events()] == []
    assert isinstance(changes.changes[-1], GaveUp) and not changes.changes[-1].login_needed
    assert "could not be reached again" in (alice.closed_reason or "")
    attempts = changes.of(Reconnecting)
    assert [c.attempt for c in attempts] == list(range(1, len(attempts) + 1))
    assert all(0 <= c.delay <= 0.02 for c in attempts)
    with pytest.raises(ConnectionError):
        await alice.send(["alice"], "anyone?")


async def test_no_reconnection_after_logout_or_a_deletion_elsewhere(server):
    await (await signed_up(server, "alice")).close()
    changes = Recorder()
    alice = await resilient(server, "alice", changes)
    other = server.open_client()
    await other.connect()
    await other.login("alice", PASSWORD)
    await other.delete_account("alice", PASSWORD)
    async with asyncio.timeout(5):
        assert [e async for e in alice.events()] == []
    assert alice.closed_reason == "the account was deleted"
    assert changes.changes == []

    await (await signed_up(server, "carol")).close()
    carol = await resilient(server, "carol", changes)
    await carol.logout()
    server.kill()
    await asyncio.sleep(0.1)
    assert changes.changes == []


def test_backoff_is_capped_exponential_with_full_jitter():
    backoff = Backoff(first=0.25, cap=10.0, give_up_after=60.0)
    assert [backoff.delay(n, lambda: 1.0) for n in range(1, 9)] == [
        0.25,
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        10.0,
        10.0,
    ]
    assert backoff.delay(3, lambda: 0.5) == 0.5
    assert backoff.delay(10**6, lambda: 1.0) == 10.0  # no overflow
    assert not backoff.exhausted(100, 59.0) and backoff.exhausted(2, 61.0)
    assert Backoff(max_attempts=3).exhausted(4, 0.0)


async def test_pending_pushed_before_the_resume_reply_come_after_resumed(server):
    bob = await signed_up(server, "bob")
    await (await signed_up(server, "alice")).close()
    order: list[object] = []
    alice = reconnecting(server.open_client, backoff=FAST, on_change=order.append)
    await alice.connect()
    await alice.login("alice", PASSWORD)
    server.down = True
    server.kill()
    bob = await signed_up_again(server, "bob")
    for n in range(3):
        await bob.send(["alice"], f"m{n}")
    server.down = False

    async def collect() -> None:
        async for event in alice.events():
            assert isinstance(event, Delivery)
            order.append(event.body)
            if event.body == "m2":
                return

    await asyncio.wait_for(collect(), 5)
    tail = [x for x in order if not isinstance(x, Reconnecting)]
    assert isinstance(tail[0], Resumed) and tail[0].pending == 3
    assert tail[1:] == ["m0", "m1", "m2"]
    await alice.close()


async def test_a_message_handed_over_while_reconnecting_is_acked_after_the_resume(server):
    bob = await signed_up(server, "bob")
    await (await signed_up(server, "alice")).close()
    changes = Recorder()
    alice = await resilient(server, "alice", changes)
    server.pushed.clear()
    await bob.send(["alice"], "read during the outage")
    await server.pushed.wait()  # in alice's client, not yet handed to the application
    server.down = True
    server.kill()
    await changes.first(Reconnecting)
    # handed over now: its ack cannot reach the server
    assert (await alice.next_message(5)).body == "read during the outage"
    server.down = False
    assert (await changes.first(Resumed)).pending == 1  # pushed again, dropped, acked again
    bob = await signed_up_again(server, "bob")
    await bob.send(["alice"], "next")
    assert (await alice.next_message(5)).body == "next"
    await alice.close()
    again = server.open_client()
    await again.connect()
    assert (await again.login("alice", PASSWORD)).pending == 0
    await again.close()
