"""The console client driven as a person would drive it: keystrokes into prompt_toolkit's pipe
input, assertions on what the console printed.

Every scenario runs on the in-process loopback and on each wire transport against a real server
process (``wirechat.launch.ServerProcess``), so the console is proven over every transport.

A :class:`Person` runs the real :class:`ui.console.Console` (real ``PromptSession.prompt_async``
on a pipe input, ``DummyOutput`` for the screen). It records each prompt the console opens, so a
test types a line only once the console is waiting for it, and it collects what the console
writes, so a test waits (bounded) for a line to appear. No assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from core import ChatClient, ChatService, HashCost, SqliteStore
from core import loopback as loopback_transport
from core.throttle import LoginThrottle
from transports import registry
from ui import console as console_module
from ui.console import LIST_PAGE_SIZE, ClientFactory, Console, PromptText
from ui.console_commands import COMMANDS
from ui.console_main import run_console
from wirechat.launch import ServerProcess

#: Seconds a test waits for a prompt or a line before failing (never a pass condition).
WAIT = 15.0
PASSWORD = "correct horse"

TRANSPORTS = ["loopback", *registry.WIRE_TRANSPORTS]


# -- the person at the keyboard ------------------------------------------------------------------
@dataclass
class _Prompt:
    text: str
    open: bool = True


class _RecordingConsole(Console):
    """The real console; it only tells its Person when a prompt opens and closes."""

    def __init__(self, person: Person, open_client: ClientFactory, page_size: int) -> None:
        super().__init__(open_client, write=person.write, page_size=page_size)
        self._person = person

    async def ask(
        self, message: PromptText, *, password: bool = False, chat_line: bool = False
    ) -> str:
        prompt = _Prompt(message() if callable(message) else message)
        self._person.prompts.put_nowait(prompt)
        try:
            return await super().ask(message, password=password, chat_line=chat_line)
        finally:
            prompt.open = False


class Person:
    """One person at one console."""

    def __init__(self, name: str, open_client: ClientFactory, *, page_size: int) -> None:
        self.name = name
        self.lines: list[str] = []  # everything the console wrote, line by line
        self.prompts: asyncio.Queue[_Prompt] = asyncio.Queue()
        self.clients: list[ChatClient] = []  # every client (connection) the console opened
        self._cursor = 0  # lines before this were matched by expect()
        self._wrote = asyncio.Event()
        self._open_client = open_client
        self._page_size = page_size
        self._stack = contextlib.ExitStack()
        self.task: asyncio.Task[int] | None = None

    def _new_client(self) -> ChatClient:
        client = self._open_client()
        self.clients.append(client)
        return client

    def write(self, text: str) -> None:
        self.lines.extend(text.split("\n"))
        self._wrote.set()

    def start(self) -> Person:
        self.pipe = self._stack.enter_context(create_pipe_input())
        console = _RecordingConsole(self, self._new_client, self._page_size)
        # The task copies the current context, so it keeps this app session after the block.
        with create_app_session(input=self.pipe, output=DummyOutput()):
            self.task = asyncio.create_task(console.run(), name=f"console-{self.name}")
        return self

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        self._stack.close()

    def transcript(self) -> str:
        return f"--- {self.name}'s console ---\n" + "\n".join(self.lines)

    # -- typing ----------------------------------------------------------------------------
    async def answer(self, expected: str, line: str) -> None:
        """Wait for the console to prompt with text containing ``expected``, then type."""
        prompt = await self.next_prompt()
        assert expected in prompt.text, f"prompt {prompt.text!r}, expected {expected!r}\n" + (
            self.transcript()
        )
        self.pipe.send_text(line + "\r")

    async def next_prompt(self) -> _Prompt:
        """The prompt the console is waiting at now (prompts it gave up are skipped)."""
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    prompt = await self.prompts.get()
                    if prompt.open:
                        return prompt
        except TimeoutError:
            pytest.fail(f"{self.name}: no prompt within {WAIT}s\n{self.transcript()}")

    async def chat(self, line: str) -> None:
        """Type a line at the chat prompt (``name> `` or ``name → peers> ``)."""
        await self.answer(f"{self.name}", line)

    async def key(self, keys: str) -> None:
        """Press raw keys (Ctrl-D is ``\\x04``) at the next prompt."""
        await self.next_prompt()
        self.pipe.send_text(keys)

    async def signup(self, password: str = PASSWORD) -> None:
        await self.answer("(s)ignup or (l)ogin", "s")
        await self.answer("Username", self.name)
        await self.answer("Password", password)
        await self.answer("Repeat password", password)
        await self.expect(f"Welcome, {self.name}!")

    async def login(self, password: str = PASSWORD) -> None:
        await self.answer("(s)ignup or (l)ogin", "l")
        await self.answer("Username", self.name)
        await self.answer("Password", password)

    # -- reading ---------------------------------------------------------------------------
    async def expect(self, text: str) -> str:
        """The first line (after the last match) containing ``text``; waits for it."""
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    for index in range(self._cursor, len(self.lines)):
                        if text in self.lines[index]:
                            self._cursor = index + 1
                            return self.lines[index]
                    self._wrote.clear()
                    await self._wrote.wait()
        except TimeoutError:
            pytest.fail(f"{self.name}: {text!r} not shown within {WAIT}s\n{self.transcript()}")

    async def exit_code(self) -> int:
        assert self.task is not None
        async with asyncio.timeout(WAIT):
            return await self.task


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def wire_server(
    transport: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess | None]:
    """One server process per wire transport for this module; tests use distinct names."""
    if transport == "loopback":
        yield None
        return
    server = ServerProcess([transport], tmp_path_factory.mktemp("console") / "chat.db").start()
    try:
        yield server
    finally:
        server.stop()


def make_service() -> ChatService:
    return ChatService(
        SqliteStore(":memory:"),
        hash_cost=HashCost.LOW,
        throttle=LoginThrottle(base=0.05, cap=0.4),
    )


@pytest_asyncio.fixture
async def open_client(
    transport: str, wire_server: ServerProcess | None
) -> AsyncIterator[ClientFactory]:
    """Opens a new (unconnected) client of the transport under test."""
    if wire_server is None:
        service = make_service()
        yield lambda: loopback_transport.open_client(service)
        await service.shutdown()
        return
    module = registry.get(transport)
    address = wire_server.addresses[transport]
    yield lambda: module.open_client(address)


PersonFactory = Callable[..., Person]
"""``people(name, page_size=...)``: a started Person, stopped at the end of the test."""

_unique = itertools.count(1)


@pytest.fixture
def names() -> Iterator[str]:
    """Fresh usernames for a test, so tests can share one server: ``alice7``, ``bob7``..."""
    n = next(_unique)
    return iter(f"{base}{n}" for base in ("alice", "bob", "carol", "dave"))


@pytest_asyncio.fixture
async def people(open_client: ClientFactory) -> AsyncIterator[PersonFactory]:
    started: list[Person] = []

    def person(name: str, *, page_size: int = LIST_PAGE_SIZE) -> Person:
        started.append(Person(name, open_client, page_size=page_size).start())
        return started[-1]

    yield person
    for each in started:
        await each.stop()


async def signed_up(open_client: ClientFactory, name: str) -> None:
    """Create an account without a console (and leave it logged out)."""
    client = open_client()
    await client.connect()
    try:
        await client.signup(name, PASSWORD)
    finally:
        await client.close()


# -- scenarios --------------------------------------------------------------------------------
async def test_signup_then_help_lists_every_command_then_quit(
    people: PersonFactory, names: Iterator[str]
) -> None:
    alice = people(next(names))
    await alice.signup()
    await alice.chat("/help")
    for spec in COMMANDS:
        await alice.expect(spec.usage)
    await alice.chat("/quit")
    assert await alice.exit_code() == 0


async def test_two_people_chat_both_ways(people: PersonFactory, names: Iterator[str]) -> None:
    alice, bob = people(next(names)), people(next(names))
    await alice.signup()
    await bob.signup()

    await alice.chat(f"/msg {bob.name} hello bob")
    line = await bob.expect("hello bob")
    assert re.search(rf"^\[\d{{4}}-\d\d-\d\d \d\d:\d\d\] #\d+ {alice.name}: hello bob$", line)
    await bob.chat("/reply hi alice, ünïcode ✓")
    await alice.expect(f"{bob.name}: hi alice, ünïcode ✓")

    # /msg made bob alice's conversation: her plain lines go to him, and her prompt says so.
    await alice.answer(f"{alice.name} → {bob.name}> ", "how are you?")
    await bob.expect(f"{alice.name}: how are you?")
    await bob.chat(f"/to {alice.name}")
    await bob.expect(f"Talking to {alice.name}")
    await bob.chat("fine, thanks")
    await alice.expect(f"{bob.name}: fine, thanks")


async def test_unknown_recipients_are_reported(people: PersonFactory, names: Iterator[str]) -> None:
    alice, bob = people(next(names)), people(next(names))
    await alice.signup()
    await bob.signup()
    await alice.chat(f"/msg {bob.name},nobody-{alice.name} to both")
    await alice.expect(f"Not delivered to nobody-{alice.name}: no such account")
    await bob.expect(f"{alice.name}: to both")
    # The unknown name left the conversation: the prompt names bob alone.
    await alice.answer(f"{alice.name} → {bob.name}> ", f"/msg ghost-{alice.name} anyone?")
    await alice.expect(f"Not sent: no account named ghost-{alice.name}.")
    # A typo that reached nobody keeps the conversation: plain lines still go to bob.
    await alice.answer(f"{alice.name} → {bob.name}> ", "still talking to bob")
    await bob.expect(f"{alice.name}: still talking to bob")


async def test_help_and_quit_work_at_the_login_prompt(
    people: PersonFactory, names: Iterator[str]
) -> None:
    alice = people(next(names))
    await alice.answer("(s)ignup or (l)ogin", "/help")
    await alice.expect("Type s to create an account")
    await alice.answer("(s)ignup or (l)ogin", "maybe")
    await alice.expect("Type s to sign up")
    await alice.answer("(s)ignup or (l)ogin", "/quit")
    assert await alice.exit_code() == 0
    await alice.expect("Bye.")


async def test_signup_checks_the_name_before_asking_for_a_password(
    people: PersonFactory, names: Iterator[str]
) -> None:
    alice = people(next(names))
    await alice.answer("(s)ignup or (l)ogin", "s")
    await alice.answer("Username", "not a name!")
    await alice.expect("'not a name!' cannot be a username: use 1-32 letters")
    await alice.answer("Username", alice.name)  # asked again, no password typed in between
    await alice.answer("Password", PASSWORD)
    await alice.answer("Repeat password", PASSWORD)
    await alice.expect(f"Welcome, {alice.name}!")


async def test_terminal_controls_from_a_peer_are_shown_escaped(
    people: PersonFactory, names: Iterator[str], open_client: ClientFactory
) -> None:
    alice = people(next(names))
    await alice.signup()
    mallory = open_client()
    await mallory.connect()
    try:
        await mallory.signup(next(names), PASSWORD)
        await mallory.send([alice.name], "\x1b[2J\x1b]0;owned\x07cleared your screen")
    finally:
        await mallory.close()
    line = await alice.expect("cleared your screen")
    assert line.endswith(": \\x1b[2J\\x1b]0;owned\\x07cleared your screen")
    assert "\x1b" not in line


async def test_messages_to_a_logged_out_person_wait_for_their_next_login(
    people: PersonFactory, names: Iterator[str]
) -> None:
    alice, bob = people(next(names)), people(next(names))
    await bob.signup()
    await bob.chat("/logout")
    await bob.expect(f"Logged out {bob.name}.")

    await alice.signup()
    await alice.chat(f"/msg {bob.name} first")
    await alice.chat("second")
    await alice.next_prompt()  # the prompt is back: both sends were stored (Rule 9)

    await bob.login()
    await bob.expect("2 messages were waiting for you:")
    await bob.expect(f"{alice.name}: first")  # in order (expect only searches forward)
    await bob.expect(f"{alice.name}: second")


async def test_failed_login_reprompts_on_a_fresh_connection(
    people: PersonFactory, names: Iterator[str], open_client: ClientFactory
) -> None:
    name = next(names)
    await signed_up(open_client, name)
    alice = people(name)
    await alice.login(password="wrong password")
    await alice.expect("Login failed: wrong username or password")
    await alice.login()
    await alice.expect(f"Logged in as {name} (/help lists the commands). No messages were")
    assert len(alice.clients) == 2  # the second attempt went over a new connection (Rule 4)

    # The same for a failed signup (the name is taken).
    again = people(name)
    await again.answer("(s)ignup or (l)ogin", "s")
    await again.answer("Username", name)
    await again.answer("Password", "x")
    await again.answer("Repeat password", "x")
    await again.expect("Signup failed:")
    await again.login()
    await again.expect(f"Logged in as {name} ")
    assert len(again.clients) == 2


async def test_a_slow_login_is_explained(
    people: PersonFactory,
    names: Iterator[str],
    open_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server's backoff (Rule 3) may hold a login for seconds; the console says so."""
    monkeypatch.setattr(console_module, "SLOW_LOGIN_NOTICE", 0.0)  # every login is "slow"
    name = next(names)
    await signed_up(open_client, name)
    alice = people(name)
    await alice.login()
    await alice.expect("Waiting for the server")
    await alice.expect(f"Logged in as {name} ")


async def test_delete_asks_for_the_username_and_password_then_ends_every_device(
    people: PersonFactory, names: Iterator[str]
) -> None:
    name = next(names)
    phone, laptop = people(name), people(name)
    await phone.signup()
    await laptop.login()
    await laptop.expect(f"Logged in as {name} ")

    await phone.chat("/delete-account")
    await phone.answer(f"Type {name} to confirm", "no")
    await phone.expect("Not deleted.")
    await phone.chat("/delete-account")
    await phone.answer(f"Type {name} to confirm", name)
    await phone.answer("Your password", "not my password")
    await phone.expect("Error: wrong password; the account was not deleted")
    await phone.chat("/delete-account")
    await phone.answer(f"Type {name} to confirm", name)
    await phone.answer("Your password", PASSWORD)
    await phone.expect(f"The account {name} is deleted.")

    # The other device is told why its session ended and is back at the login prompt.
    assert "deleted" in await laptop.expect("The server ended your session:")
    await laptop.login()
    await laptop.expect("Login failed: wrong username or password")
    # The deleting console is back at the login prompt too; the name is free again.
    await phone.signup()


async def test_list_accounts_with_wildcards_and_paging(
    people: PersonFactory, names: Iterator[str], open_client: ClientFactory
) -> None:
    prefix = f"{next(names)}-"
    for suffix in ("a1", "a2", "a3", "b1"):
        await signed_up(open_client, prefix + suffix)
    viewer = people(next(names), page_size=2)
    await viewer.signup()

    await viewer.chat(f"/list {prefix}a*")
    await viewer.expect(f"Accounts matching '{prefix}a*' (1-2):")
    await viewer.expect(f"{prefix}a1  {prefix}a2")
    await viewer.expect("more follow: /more")
    await viewer.chat("/more")
    await viewer.expect(f"Accounts matching '{prefix}a*' (3-3):")
    assert (await viewer.expect(f"{prefix}a3")).strip() == f"{prefix}a3"
    await viewer.chat("/more")
    await viewer.expect("Nothing more to show")
    await viewer.chat(f"/list {prefix}?1")
    await viewer.expect(f"{prefix}a1  {prefix}b1")
    await viewer.chat(f"/list {prefix}zz*")
    await viewer.expect(f"No account matches '{prefix}zz*'.")


async def test_ctrl_d_at_login_and_ctrl_c_in_chat_exit_cleanly(
    people: PersonFactory, names: Iterator[str]
) -> None:
    at_login = people(next(names))
    await at_login.key("\x04")  # Ctrl-D on an empty line
    assert await at_login.exit_code() == 0

    chatting = people(next(names))
    await chatting.signup()
    await chatting.key("\x03")  # Ctrl-C
    assert await chatting.exit_code() == 0
    await chatting.expect("Bye.")


# -- history (Rules 19-25) ----------------------------------------------------------------------
def message_id(line: str) -> int:
    """The ``#12`` of a printed message."""
    found = re.search(r"\] #(\d+) ", line)
    assert found, line
    return int(found[1])


async def test_history_and_conversations_page_back_and_mark_read(
    transport: str, people: PersonFactory, names: Iterator[str], open_client: ClientFactory
) -> None:
    alice_name = next(names)
    await signed_up(open_client, alice_name)
    bob = people(next(names))
    await bob.signup()
    await bob.chat("/history")
    await bob.expect("Which conversation?")
    alice = people(alice_name)
    await alice.login()
    for body in ("one", "two", "three"):
        await alice.chat(f"/msg {bob.name} {body}")
    await bob.expect(f"{alice_name}: three")

    await bob.chat("/conversations")
    await bob.expect("Conversations (newest first")
    row = await bob.expect(f" {alice_name} ")
    assert "3 unread" in row and f"{alice_name}: three" in row
    cid = int(row.split()[0].lstrip("#"))

    await bob.chat(f"/history {alice_name} 2")
    await bob.expect(f"The 2 last messages with {alice_name} (#{cid}):")
    await bob.expect(f"{alice_name}: two")
    await bob.expect(f"{alice_name}: three")
    await bob.expect("older messages: /more")
    await bob.chat("/more")
    await bob.expect(f"1 older message with {alice_name}")
    await bob.expect(f"{alice_name}: one")
    await bob.chat("/more")
    await bob.expect("Nothing more to show")
    # /history made alice the current conversation and marked it read.
    await bob.answer(f"{bob.name} → {alice_name}> ", "/conversations")
    row = await bob.expect(f"#{cid}")
    assert "unread" not in row and f"{alice_name}: three" in row
    await bob.chat(f"/history #{cid} 1")
    await bob.expect(f"The 1 last message with {alice_name} (#{cid}):")


async def test_delete_for_me_and_for_everyone(
    transport: str, people: PersonFactory, names: Iterator[str]
) -> None:
    alice, bob = people(next(names)), people(next(names))
    await alice.signup()
    await bob.signup()
    await alice.chat(f"/msg {bob.name} sent by mistake")
    oops = message_id(await bob.expect("sent by mistake"))
    await alice.chat("keep this")
    keep = message_id(await bob.expect("keep this"))

    await bob.chat(f"/delete {oops} --everyone")
    await bob.expect("Error: only the sender may delete a message for everyone")
    await alice.chat(f"/delete #{oops} --everyone")
    await alice.expect(f"(Message #{oops} deleted.)")
    await bob.expect(f"(Message #{oops} deleted.)")
    await bob.chat(f"/delete {keep}")  # for me only
    await bob.expect(f"(Message #{keep} deleted.)")
    await bob.chat(f"/history {alice.name}")
    await bob.expect(f"No messages with {alice.name} yet.")
    await alice.chat(f"/history {bob.name}")
    await alice.expect(f"The 1 last message with {bob.name}")
    assert message_id(await alice.expect("keep this")) == keep


async def test_group_reply_goes_to_all_and_other_devices_see_what_you_sent(
    transport: str, people: PersonFactory, names: Iterator[str]
) -> None:
    alice, bob, carol = people(next(names)), people(next(names)), people(next(names))
    for person in (alice, bob, carol):
        await person.signup()
    laptop = people(alice.name)  # alice's second device
    await laptop.login()
    await laptop.expect(f"Logged in as {alice.name} ")

    await alice.chat(f"/msg {bob.name},{carol.name} lunch?")
    await bob.expect(f"{alice.name} → you, {carol.name}: lunch?")
    await carol.expect(f"{alice.name} → you, {bob.name}: lunch?")
    await laptop.expect(f"you → {bob.name}, {carol.name}: lunch?  (another device)")

    await bob.chat("/reply yes, at noon")  # to everyone in the conversation
    await carol.expect(f"{bob.name} → you, {alice.name}: yes, at noon")
    await alice.expect(f"{bob.name} → you, {carol.name}: yes, at noon")
    await laptop.expect(f"{bob.name} → you, {carol.name}: yes, at noon")

    # Reading on one device is told to the other (Rule 22).
    await alice.chat(f"/history {bob.name},{carol.name}")
    await alice.expect("yes, at noon")
    await laptop.expect("was read on another device: nothing unread")


async def test_a_deleted_accounts_messages_are_marked_and_reply_does_not_reach_the_name(
    transport: str, people: PersonFactory, names: Iterator[str]
) -> None:
    alice, bob = people(next(names)), people(next(names))
    await alice.signup()
    await bob.signup()
    await bob.chat(f"/msg {alice.name} farewell")
    await alice.expect(f"{bob.name}: farewell")
    await bob.chat("/delete-account")
    await bob.answer(f"Type {bob.name} to confirm", bob.name)
    await bob.answer("Your password", PASSWORD)
    await bob.expect(f"The account {bob.name} is deleted.")

    await alice.chat("/conversations")
    row = await alice.expect(f"{bob.name} (deleted account)")
    cid = int(row.split()[0].lstrip("#"))
    await alice.chat(f"/history #{cid}")
    await alice.expect(f"{bob.name} (deleted account): farewell")
    await alice.expect("the name may belong to someone else now")
    newcomer = people(bob.name)
    await newcomer.signup()  # someone new takes the name
    await alice.chat(f"/history {bob.name}")
    await alice.expect(f"No messages with {bob.name} yet.")  # a new conversation


# -- wire only: a real server process and the real entry point ----------------------------------
def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("wire", registry.WIRE_TRANSPORTS)
async def test_unreachable_server_is_one_line_and_exit_1(
    wire: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        code = await run_console(wire, "127.0.0.1", closed_port())
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"wirechat client: cannot reach the {wire} server at 127.0.0.1:")


async def test_unknown_transport_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_console("carrier-pigeon", "127.0.0.1", 1) == 2
    assert "unknown transport 'carrier-pigeon'" in capsys.readouterr().err


# A server that shuts down (or dies) while logged in: the console reconnects and resumes
# (issue 13); tests/integration/test_console_reconnect.py shows it, and what happens when the
# server stays away.


async def test_entry_point_runs_the_console_over_the_transport(
    transport: str,
    wire_server: ServerProcess | None,
    open_client: ClientFactory,
    names: Iterator[str],
) -> None:
    """``run_console`` as ``wirechat client`` calls it, keys typed ahead: sign up, quit."""
    name = next(names)
    if wire_server is None:
        host, port, factory = "", 0, open_client
    else:
        (host, port), factory = wire_server.addresses[transport], None
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        pipe.send_text(f"s\r{name}\r{PASSWORD}\r{PASSWORD}\r/quit\r")
        async with asyncio.timeout(WAIT):
            code = await run_console(transport, host, port, client_factory=factory)
    assert code == 0
    client = open_client()
    await client.connect()
    try:
        assert (await client.login(name, PASSWORD)).username == name
    finally:
        await client.close()


async def test_the_wrong_port_is_explained_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The custom console pointed at the gRPC port says what speaks there and what to use."""
    server = ServerProcess(["grpc"], tmp_path / "chat.db").start()
    try:
        host, port = server.addresses["grpc"]
        with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
            code = await run_console("custom", host, port)
    finally:
        server.stop()
    assert code == 1
    err = capsys.readouterr().err
    assert f"{host}:{port} speaks HTTP/2 (a gRPC server)" in err, err
    assert "did you mean --transport grpc" in err
    assert "ProtocolError" not in err and "MALFORMED" not in err
