"""Issue 13, "clients that survive a server restart", against a real server child on every wire
transport: a logged-in client made with ``core.reconnect.reconnecting`` sees the server killed
with SIGKILL and restarted on the same port and database, resumes on its own (no password),
and gets the message sent while it was away exactly once.

To be sure the message is sent *while it is away* (not after it has already resumed), its
attempts go to a port where nothing listens until the test opens the gate: to it, the server
is simply still down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TypeVar

import pytest

from core.client import ChatClient
from core.reconnect import Backoff, ConnectionChange, Reconnecting, Resumed, reconnecting
from transports import registry
from wirechat.launch import ServerProcess
from wirechat.services import free_fixed_port, free_port

PASSWORD = "pw-secret-1"
WIRE = [entry.name for entry in registry.ENTRIES if entry.wire]
# Quick retries for a test; the give-up bound is far beyond a restart on a loaded machine.
BACKOFF = Backoff(first=0.1, cap=0.5, give_up_after=120.0)
WAIT = 60.0
T = TypeVar("T")  # seconds for anything to happen (the restart included)


@pytest.fixture(params=WIRE)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


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

    async def first(self, kind: type[T], timeout: float = WAIT) -> T:
        async with asyncio.timeout(timeout):
            while not self.of(kind):
                self._new.clear()
                await self._new.wait()
        return self.of(kind)[0]


async def plain(transport: str, address: tuple[str, int], name: str, *, create: bool) -> ChatClient:
    client = registry.get(transport).open_client(address)
    await client.connect()
    await (client.signup if create else client.login)(name, PASSWORD)
    return client


async def test_a_client_resumes_on_its_own_after_kill_9_and_a_restart(
    transport, servers, tmp_path, names
):
    db = tmp_path / "chat.db"
    # listened on again after the restart: a port no outgoing connection is given meanwhile
    listen = ["--listen", f"{transport}={free_fixed_port()}"]
    server = ServerProcess([], db, extra_args=listen).start()
    servers.append(server)
    address = server.addresses[transport]
    alice, bob = names("alice"), names("bob")
    await (await plain(transport, address, alice, create=True)).close()
    sender = await plain(transport, address, bob, create=True)

    gate = asyncio.Event()
    nowhere = ("127.0.0.1", free_port())
    module = registry.get(transport)

    def open_client() -> ChatClient:
        return module.open_client(address if gate.is_set() else nowhere)

    gate.set()
    changes = Recorder()
    client = reconnecting(open_client, backoff=BACKOFF, on_change=changes)
    await client.connect()
    await client.login(alice, PASSWORD)
    await sender.send([alice], "before the crash")
    assert (await client.next_message(WAIT)).body == "before the crash"

    gate.clear()
    server.kill9()
    await changes.first(Reconnecting)
    await sender.close()
    restarted = ServerProcess([], db, extra_args=listen)
    servers.append(restarted.start())
    assert restarted.addresses[transport] == address
    sender = await plain(transport, address, bob, create=False)
    await sender.send([alice], "while you were away")
    gate.set()

    await changes.first(Resumed)
    assert (await client.next_message(WAIT)).body == "while you were away"
    await sender.send([alice], "after the resume")
    # nothing came twice in between (neither "before the crash" nor "while you were away")
    assert (await client.next_message(WAIT)).body == "after the resume"
    resumed = changes.of(Resumed)
    # 1, or 2 if the ack of "before the crash" had not reached the disk: shown once anyway
    assert len(resumed) == 1 and resumed[0].pending in (1, 2)
    assert client.logged_in
    await client.logout()  # the resumed session is a real one: it logs out
    await client.close()
    await sender.close()
    again = await plain(transport, address, alice, create=False)
    assert (await again.send([alice], "note to self")).message_id > 0
    await again.close()
