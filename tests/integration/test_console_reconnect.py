"""The console through a server restart (issue 13) and its account commands (/passwd,
/delete-account with the password), driven as a person would (tests/integration/test_console.py's
Person: keystrokes in, printed lines out).

A restart here is the real thing: the server child is killed with SIGKILL and started again on
the same port and database. The consoles are never touched meanwhile: they reconnect and
resume on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from prompt_toolkit.application import create_app_session
from prompt_toolkit.output import DummyOutput

from core import ChatClient
from core.reconnect import Backoff
from tests.integration.test_console import (
    PASSWORD,
    Person,
    _RecordingConsole,
    make_service,
)
from transports import registry
from ui.console import ClientFactory
from wirechat.launch import ServerProcess
from wirechat.services import free_fixed_port, free_port

WIRE = list(registry.WIRE_TRANSPORTS)
FAST = Backoff(first=0.1, cap=0.5, give_up_after=120.0)
NEW_PASSWORD = "pw-secret-2"


class _Console(_RecordingConsole):
    def __init__(self, person: Resilient, open_client: ClientFactory, page_size: int) -> None:
        super().__init__(person, open_client, page_size)
        self._backoff = person.backoff


class Resilient(Person):
    """A Person whose console retries quickly after a lost connection."""

    backoff = FAST

    def start(self) -> Resilient:
        from prompt_toolkit.input import create_pipe_input

        self.pipe = self._stack.enter_context(create_pipe_input())
        console = _Console(self, self._new_client, self._page_size)
        with create_app_session(input=self.pipe, output=DummyOutput()):
            self.task = asyncio.create_task(console.run(), name=f"console-{self.name}")
        return self

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


class Restartable:
    """A server child on a fixed port; ``kill9()`` then ``restart()`` (same port, same or
    another database). The port is below the kernel's ephemeral range (``free_fixed_port``):
    no outgoing connection is given it while the server is down."""

    def __init__(self, transport: str, db: Path) -> None:
        self.transport = transport
        self.db = db
        self._listen = ["--listen", f"{transport}={free_fixed_port()}"]
        self.process = ServerProcess([], db, extra_args=self._listen).start()
        self.address = self.process.addresses[transport]
        self.old: list[ServerProcess] = []

    def kill9(self) -> None:
        self.process.kill9()

    def restart(self, db: Path | None = None) -> None:
        self.old.append(self.process)
        self.process = ServerProcess([], db or self.db, extra_args=self._listen).start()
        assert self.process.addresses[self.transport] == self.address

    def stop(self) -> None:
        for process in (*self.old, self.process):
            process.stop()

    def open_client(self) -> ChatClient:
        return registry.get(self.transport).open_client(self.address)


@pytest.fixture
def unique(names) -> Callable[[str], str]:  # type: ignore[no-untyped-def]
    return lambda base: names(base).replace("_", "")


@pytest_asyncio.fixture
async def consoles() -> AsyncIterator[Callable[[str, ClientFactory], Resilient]]:
    started: list[Resilient] = []

    def start(name: str, open_client: ClientFactory) -> Resilient:
        started.append(Resilient(name, open_client, page_size=40).start())
        return started[-1]

    yield start
    for person in started:
        await person.stop()


@pytest.fixture(params=WIRE)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Restartable]:
    server = Restartable(str(request.param), tmp_path / "chat.db")
    try:
        yield server
    finally:
        server.stop()


async def sign_up(server: Restartable, name: str) -> None:
    client = server.open_client()
    await client.connect()
    with contextlib.suppress(Exception):
        await client.signup(name, PASSWORD)
    await client.close()


async def test_consoles_resume_after_kill_9_and_a_restart(server, consoles, unique):
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    gate = asyncio.Event()  # alice's attempts find nothing listening until it opens
    gate.set()
    nowhere = ("127.0.0.1", free_port())
    module = registry.get(server.transport)

    def alices_client() -> ChatClient:
        return module.open_client(server.address if gate.is_set() else nowhere)

    a = consoles(alice, alices_client)
    b = consoles(bob, server.open_client)
    await a.signup()
    await b.signup()
    await sign_up(server, carol)
    await b.chat(f"/msg {alice} before the crash")
    await a.expect(f"{bob}: before the crash")

    gate.clear()
    server.kill9()
    await a.expect("The connection to the server was lost")
    await b.expect("The connection to the server was lost")
    await a.expect("Reconnecting")
    server.restart()
    await b.expect("Reconnected;")  # bob is back on his own
    sender = server.open_client()
    await sender.connect()
    await sender.login(carol, PASSWORD)
    await sender.send([alice], "while you were away")
    await sender.close()
    gate.set()
    await a.expect("Reconnected;")
    await a.expect(f"{carol}: while you were away")

    await b.chat("and after it")  # bob's conversation is still alice: the chat went on
    await a.expect(f"{bob}: and after it")
    assert a.count("before the crash") == 1
    assert a.count("while you were away") == 1
    await a.chat(f"/msg {bob} got it")
    await b.expect(f"{alice}: got it")


async def test_a_refused_resume_goes_back_to_the_login_prompt(consoles, unique, tmp_path):
    server = Restartable("custom", tmp_path / "chat.db")
    try:
        a = consoles(unique("alice"), server.open_client)
        await a.signup()
        server.kill9()
        await a.expect("Reconnecting")
        server.restart(tmp_path / "other.db")  # a server that never issued that token
        await a.expect("Could not resume your session")
        await a.answer("(s)ignup or (l)ogin", "s")  # and the console carries on
        await a.answer("Username", a.name)
        await a.answer("Password", PASSWORD)
        await a.answer("Repeat password", PASSWORD)
        await a.expect(f"Welcome, {a.name}!")
    finally:
        server.stop()


@pytest_asyncio.fixture(params=["loopback", "custom"])
async def account_clients(request, tmp_path) -> AsyncIterator[ClientFactory]:  # type: ignore[no-untyped-def]
    if request.param == "loopback":
        service = make_service()
        from core import loopback

        yield lambda: loopback.open_client(service)
        await service.shutdown()
        return
    server = ServerProcess(["custom"], tmp_path / "chat.db").start()
    try:
        module = registry.get("custom")
        yield lambda: module.open_client(server.addresses["custom"])
    finally:
        server.stop()


async def test_passwd_changes_the_password_and_signs_out_the_other_devices(
    account_clients, consoles, unique
):
    name = unique("alice")
    phone, laptop = consoles(name, account_clients), consoles(name, account_clients)
    await phone.signup()
    await laptop.login()
    await laptop.expect(f"Logged in as {name} ")

    await phone.chat("/passwd")
    await phone.answer("Current password", "not it")
    await phone.answer("New password", NEW_PASSWORD)
    await phone.answer("Repeat the new password", NEW_PASSWORD)
    await phone.answer("Sign out your other devices", "y")
    await phone.expect("Error: wrong password")
    await phone.chat("/passwd")
    await phone.answer("Current password", PASSWORD)
    await phone.answer("New password", "short")
    await phone.answer("Repeat the new password", "short")
    await phone.answer("Sign out your other devices", "")
    await phone.expect("Error: a password needs at least 8 characters")
    await phone.chat("/passwd")
    await phone.answer("Current password", PASSWORD)
    await phone.answer("New password", NEW_PASSWORD)
    await phone.answer("Repeat the new password", NEW_PASSWORD)
    await phone.answer("Sign out your other devices", "")
    await phone.expect("Password changed; 1 other session signed out.")

    # The laptop is told why and is back at the login prompt (no attempt to resume).
    await laptop.expect("The server ended your session: the password was changed")
    assert laptop.count("Reconnecting") == 0
    await laptop.login(PASSWORD)
    await laptop.expect("Login failed: wrong username or password")
    await laptop.login(NEW_PASSWORD)
    await laptop.expect(f"Logged in as {name} ")
    await phone.chat("/msg " + name + " still here")  # the phone's session went on
    await laptop.expect("still here")


async def test_a_shutdown_is_explained_and_a_server_that_stays_away_ends_the_console(
    unique, tmp_path
):
    """A graceful stop says why and reconnects; when the server does not come back within the
    bound, the console says so, goes back to the login prompt, cannot reach the server and
    exits with 1 (as when it cannot reach it at the start)."""
    server = Restartable("custom", tmp_path / "chat.db")
    try:
        person = Resilient(unique("alice"), server.open_client, page_size=40)
        person.backoff = Backoff(first=0.1, cap=0.5, give_up_after=2.0)
        person.start()
        try:
            await person.signup()
            await asyncio.to_thread(server.process.stop)
            await person.expect("(the server is shutting down). Reconnecting")
            await person.expect("Could not reconnect: the server could not be reached again")
            with pytest.raises(ConnectionError, match="cannot reach"):
                await person.exit_code()
        finally:
            await person.stop()
    finally:
        server.stop()
