"""The interactive console client: ``wirechat client --transport custom|grpc --host H --port P``.

Theory of operation
  * The console speaks only the :class:`core.client.ChatClient` interface, so it runs over any
    transport in the registry. What a typed line means lives in ``ui.console_commands`` and what
    gets printed in ``ui.console_format``, both pure; this module is the loop that joins them to
    prompt_toolkit and the network.
  * One connection per login (Rule 4). The console connects, asks "(s)ignup or (l)ogin",
    username and password, and sends the request. A failed signup or login ends the session on
    the server (the custom transport closes the connection), so the console closes that client
    and starts again on a fresh connection; the user never re-runs the program. /logout,
    /delete and a session the server ended also go back to the login prompt on a new connection.
    Only an unreachable server stops the program, with :class:`ServerUnreachable`.
  * While logged in, two tasks share the terminal: the prompt (``PromptSession.prompt_async``)
    and a receiver draining ``client.events()`` (messages, and the notices of Rules 22-24:
    a message sent from another device, a conversation read there, messages deleted). Under
    ``patch_stdout`` what the receiver prints appears above the input line and the person's
    half-typed text is redrawn below it.
    When the message stream ends without the person asking for it (account deleted on another
    device, server shutdown, slow consumer, lost connection) the receiver sets ``Chat.ended``;
    the prompt is raced against that event, so a waiting prompt is cancelled at once and the
    console says why.
  * History is the server's (Rules 20-25): /history reads a conversation a page at a time
    (newest page first, printed oldest first, /more goes further back) and marks it read;
    /conversations lists them with unread counts. Ids are printed as ``#12``: /delete takes
    message ids, /history takes ``#ID`` for a conversation (the only way to reach one whose
    member's account was deleted: the name may belong to someone else now, Rule 19).
  * A lost connection is not the end of a session (issue 13): the client comes from
    ``core.reconnect.reconnecting``, which reconnects with backoff and resumes the session
    with its resume token. The console prints each attempt ("Reconnecting... (attempt 2, next
    in 0.4 s)") and "Reconnected; N pending", and the chat carries on; the messages that
    waited arrive as usual, none twice. A command typed meanwhile fails with a sentence.
    If the server refuses to resume (or stays away too long) the console says so and goes
    back to the login prompt. /passwd and /delete-account live in ``ui.console_account``.
  * Ctrl-D or Ctrl-C at any prompt, or /quit, close the connection and return 0. Ctrl-C while
    a request is in flight (no prompt reading keys) reaches asyncio.run, which cancels the
    main task; ``ui.console_main.run_console`` tells that cancellation apart and exits the
    same way, without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import WordCompleter
from prompt_toolkit.history import DummyHistory, InMemoryHistory

from core import limits
from core.client import ChatClient
from core.errors import ChatError, SessionClosed
from core.reconnect import Backoff, ConnectionChange, GaveUp, Reconnecting, reconnecting
from core.types import Delivery, LoginResult
from ui import console_pages as pages
from ui.console_account import change_password, delete_account
from ui.console_commands import (
    COMMAND_WORDS,
    ChangePassword,
    Command,
    CommandError,
    Conversations,
    Delete,
    DeleteMessages,
    Help,
    History,
    ListAccounts,
    Logout,
    MoreAccounts,
    Nothing,
    Quit,
    Reply,
    Say,
    Send,
    Talk,
    help_text,
    parse_auth_choice,
    parse_line,
)
from ui.console_format import (
    clean,
    format_conversation,
    format_delivery,
    format_gave_up,
    format_login,
    format_notice,
    format_prompt,
    format_reconnecting,
    format_resumed,
    format_send_result,
    format_session_end,
)

log = logging.getLogger(__name__)

#: Accounts per /list page: about a screenful of names at 78 columns.
LIST_PAGE_SIZE = 40
#: What /help says at the login prompts (the chat commands work once logged in).
AUTH_HELP = (
    "Type s to create an account (you choose a username and a password) or l to log in to "
    "an existing one. /quit (or Ctrl-D) leaves. Once you are in, /help lists the chat "
    "commands."
)

#: Seconds to wait for the server's reason after a command found the session closed.
END_REASON_GRACE = 1.0

#: Seconds of silence after a login request before the console explains the wait (the
#: server's per-name backoff, Rule 3, can hold a login for several seconds).
SLOW_LOGIN_NOTICE = 1.5

T = TypeVar("T")

ClientFactory = Callable[[], ChatClient]
"""Returns a new, not yet connected client; the console calls ``connect()`` itself."""

PromptText = str | Callable[[], str]


class ServerUnreachable(ConnectionError):
    """The console could not connect; ``str(err)`` is a one-line explanation for a person."""


class _CtrlC(Exception):
    """Ctrl-C at a prompt that runs in its own task (see ``Console._ask_in_chat``)."""


class _Next(Enum):
    """What the console does after a connection's session is over."""

    LOGIN_AGAIN = "login again"  # on a fresh connection
    QUIT = "quit"


@dataclass
class Chat:
    """The state of one logged-in session as the console sees it."""

    username: str
    peers: tuple[str, ...] = ()  # the current conversation: where plain lines go
    reply_to: tuple[str, ...] | None = None  # for /reply: the last incoming conversation
    listing_pattern: str | None = None  # the last /list, for /more
    listing_after: str = ""
    listing_next: int = 1  # 1-based number of the next name /more shows
    listing_more: bool = False
    more: str = ""  # what /more continues: "accounts", "conversations" or "history"
    conversations_before: int = 0  # the cursor of the next /conversations page
    history: History | None = None  # the last /history, for /more
    history_before: int = 0
    leaving: bool = False  # the person asked to end the session (logout, delete, quit)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # the message stream is over
    end_reason: str | None = None
    gave_up: str | None = None  # why reconnecting gave up, said as the chat ends


class Console:
    """The console over one kind of client. ``await Console(factory).run()`` -> exit code.

    ``write`` prints one block of text for the person (default: ``print``, which
    ``patch_stdout`` puts above the prompt). The prompts use prompt_toolkit's current app
    session, so tests drive the console with ``create_app_session(input=pipe, output=...)``.
    """

    def __init__(
        self,
        open_client: ClientFactory,
        *,
        server: str = "the server",
        write: Callable[[str], None] | None = None,
        page_size: int = LIST_PAGE_SIZE,
        backoff: Backoff | None = None,
    ) -> None:
        self._open_client = open_client
        self._backoff = backoff  # None: core.reconnect's defaults
        self._current: Chat | None = None  # the session being chatted in, for _reconnection
        self._server = server
        self._write = write or _print
        self._page_size = page_size
        self._auth_prompt: PromptSession[str] | None = None
        self._chat_prompt: PromptSession[str] | None = None
        self._connected_before = False

    # -- the outer loop: one connection per login -------------------------------------------
    async def run(self) -> int:
        """Run until the person quits (0). Raises ServerUnreachable if a connect fails."""
        # The login prompts keep no history, so a password can never be recalled onto the
        # screen; the chat line gets its own prompt with a history at each login (_chat).
        self._auth_prompt = PromptSession(history=DummyHistory())
        try:
            while await self._one_connection() is _Next.LOGIN_AGAIN:
                pass
        except (EOFError, KeyboardInterrupt):
            pass  # Ctrl-D / Ctrl-C at a prompt: leave quietly
        self._write("Bye.")
        return 0

    async def _one_connection(self) -> _Next:
        client = reconnecting(
            self._open_client, backoff=self._backoff, on_change=self._reconnection
        )
        try:
            try:
                await client.connect()
            except OSError as exc:
                raise ServerUnreachable(f"cannot reach {self._server}: {_reason(exc)}") from exc
            if not self._connected_before:
                self._connected_before = True
                self._write(f"Connected to {self._server}.")
            login = await self._authenticate(client)
            if login is None:
                return _Next.LOGIN_AGAIN  # failed: Rule 4, start over on a fresh connection
            result, signed_up = login
            return await self._chat(client, result, signed_up)
        finally:
            await _close_quietly(client)

    async def _authenticate(self, client: ChatClient) -> tuple[LoginResult, bool] | None:
        """Ask and send signup or login; None if the server refused (its error is shown)."""
        action = None
        while action is None:
            answer = await self.ask("(s)ignup or (l)ogin? ")
            if _is_command(answer, "quit", "q", "exit"):
                raise EOFError  # leaves like Ctrl-D: "Bye."
            if _is_command(answer, "help", "h", "?"):
                self._write(AUTH_HELP)
                continue
            action = parse_auth_choice(answer)
            if action is None and answer.strip():
                self._write("Type s to sign up (a new account) or l to log in; /help, /quit.")
        username = await self._ask_username(signup=action == "signup")
        password = await self._ask_password(confirm=action == "signup")
        request = client.signup if action == "signup" else client.login
        try:
            result = await self._patiently(request(username, password))
        except ChatError as exc:
            self._write(f"{action.capitalize()} failed: {clean(str(exc))}")
            return None
        except OSError as exc:
            self._write(f"{action.capitalize()} failed, the connection broke: {_reason(exc)}")
            return None
        return result, action == "signup"

    async def _patiently(self, request: Awaitable[T]) -> T:
        """Await ``request``; if it is slow, say why rather than leave a silent terminal."""
        task = asyncio.ensure_future(request)
        try:
            done, _ = await asyncio.wait({task}, timeout=SLOW_LOGIN_NOTICE)
            if not done:
                self._write(
                    "Waiting for the server (after failed attempts it slows down logins "
                    "for that name)..."
                )
            return await task
        finally:
            task.cancel()  # only matters if we are being cancelled ourselves

    async def _ask_username(self, *, signup: bool) -> str:
        """A username; for a signup one the server would accept (Rule 1), checked before the
        password is asked for, so a malformed name costs no typing of passwords."""
        while True:
            username = (await self.ask("Username: ")).strip()
            if _is_command(username, "quit", "q", "exit"):
                raise EOFError
            if not username:
                continue
            if signup and not limits.USERNAME_RE.fullmatch(username):
                self._write(
                    f"{clean(username)!r} cannot be a username: use 1-"
                    f"{limits.MAX_USERNAME_CHARS} letters, digits, '_', '.' or '-'."
                )
                continue
            return username

    async def _ask_password(self, *, confirm: bool) -> str:
        while True:
            password = await self.ask("Password: ", password=True)
            if not password:
                continue
            if not confirm or await self.ask("Repeat password: ", password=True) == password:
                return password
            self._write("The passwords differ; try again.")

    # -- the chat loop of one session -------------------------------------------------------
    async def _chat(self, client: ChatClient, result: LoginResult, signed_up: bool) -> _Next:
        chat = Chat(result.username)
        # A new history per login: the next person at this terminal cannot recall these lines.
        self._chat_prompt = PromptSession(
            history=InMemoryHistory(),
            completer=WordCompleter(list(COMMAND_WORDS)),
            complete_while_typing=False,
        )
        self._write(format_login(result, signed_up=signed_up))
        self._current = chat
        receiver = asyncio.create_task(self._receive(client, chat), name="console-receiver")
        try:
            while True:
                line = await self._ask_in_chat(
                    chat, lambda: format_prompt(chat.username, chat.peers), chat_line=True
                )
                if line is None:
                    return self._ended_by_server(chat)
                try:
                    command = parse_line(line)
                except CommandError as exc:
                    self._write(str(exc))
                    continue
                outcome = await self._execute_safely(client, chat, command)
                if outcome is not None:
                    return outcome
        finally:
            self._current = None
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver

    def _reconnection(self, change: ConnectionChange) -> None:
        """What the client says while it restores a lost connection (core.reconnect)."""
        chat = self._current
        if isinstance(change, Reconnecting):
            self._write(format_reconnecting(change))
        elif isinstance(change, GaveUp):
            if chat is None:
                self._write(format_gave_up(change))
            else:  # said as the chat ends, which it does next
                chat.gave_up = format_gave_up(change)
        else:
            self._write(format_resumed(change))

    async def _receive(self, client: ChatClient, chat: Chat) -> None:
        """Print each incoming message and notice until the stream ends, then set
        ``chat.ended``."""
        reason: str | None = None
        try:
            async for event in client.events():
                if isinstance(event, Delivery):
                    if event.sender != chat.username or event.participants:
                        chat.reply_to = _reply_all(event, chat.username)
                    self._write(format_delivery(event, me=chat.username))
                else:
                    self._write(format_notice(event, me=chat.username))
            reason = client.closed_reason
        except (ChatError, OSError) as exc:  # e.g. the ack of a message failed
            reason = str(exc)
        except Exception:  # a transport bug must not leave a silent, dead chat
            log.exception("the message stream failed")
            reason = "the client failed (see the log)"
        chat.end_reason = reason
        chat.ended.set()

    async def _ask_in_chat(
        self, chat: Chat, message: PromptText, *, password: bool = False, chat_line: bool = False
    ) -> str | None:
        """A prompt that gives way (None) as soon as the session ends under it."""
        if chat.ended.is_set():
            return None

        async def read() -> str:
            # A KeyboardInterrupt escaping a task is re-raised by asyncio out of the event
            # loop itself; carry Ctrl-C out of this task as an ordinary exception instead.
            try:
                return await self.ask(message, password=password, chat_line=chat_line)
            except KeyboardInterrupt:
                raise _CtrlC from None

        prompt = asyncio.ensure_future(read())
        ended = asyncio.ensure_future(chat.ended.wait())
        try:
            await asyncio.wait({prompt, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not prompt.done():
                prompt.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prompt
        if prompt.cancelled():
            return None
        try:
            return prompt.result()  # or raises EOFError on Ctrl-D
        except _CtrlC:
            raise KeyboardInterrupt from None

    def _ended_by_server(self, chat: Chat) -> _Next:
        if chat.gave_up is not None:
            self._write(chat.gave_up)
        elif not chat.leaving:
            self._write(format_session_end(chat.end_reason))
        return _Next.LOGIN_AGAIN

    async def _execute_safely(
        self, client: ChatClient, chat: Chat, command: Command
    ) -> _Next | None:
        """Run one command; domain errors are shown and the chat goes on."""
        try:
            return await self._execute(client, chat, command)
        except SessionClosed as exc:
            # The receiver learns the reason from the transport as the stream ends; give it a
            # moment so the person reads "the account was deleted", not a bare error.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(END_REASON_GRACE):
                    await chat.ended.wait()
            chat.end_reason = chat.end_reason or str(exc)
            chat.leaving = False
            return self._ended_by_server(chat)
        except ChatError as exc:
            chat.leaving = False
            self._write(f"Error: {clean(str(exc))}")
            return None
        except OSError as exc:
            self._write(f"The connection to {self._server} broke: {_reason(exc)}")
            return _Next.LOGIN_AGAIN

    async def _execute(self, client: ChatClient, chat: Chat, command: Command) -> _Next | None:
        match command:
            case Nothing():
                pass
            case Help():
                self._write(help_text())
            case Say(body):
                if not chat.peers:
                    self._write(format_conversation(()))
                else:
                    await self._send(client, chat, body)
            case Send(recipients, body):
                # The names the server knows become the conversation; a typo that reaches
                # nobody ("/msg nosuch ...") keeps the conversation the person was in.
                await self._send(client, chat, body, recipients)
            case Reply(body):
                if chat.reply_to is None:
                    self._write("Nobody has written to you yet in this session.")
                elif not chat.reply_to:
                    self._write(
                        "Nobody in that conversation can get a reply: their accounts were "
                        "deleted (the names may belong to someone else now)."
                    )
                else:
                    chat.peers = chat.reply_to
                    await self._send(client, chat, body)
            case History() as wanted:
                await pages.history(self, client, chat, wanted)
            case Conversations():
                chat.more, chat.conversations_before = "conversations", 0
                await pages.conversations_page(self, client, chat)
            case DeleteMessages(ids, everyone):
                await client.delete_messages(ids, for_everyone=everyone)
                # The server's MessagesDeleted notice (to this session too) says which went.
            case Talk(recipients):
                if recipients:
                    chat.peers = recipients
                self._write(format_conversation(chat.peers))
            case ListAccounts(pattern):
                chat.listing_pattern, chat.listing_after, chat.listing_next = pattern, "", 1
                chat.more = "accounts"
                await pages.list_page(self, client, chat)
            case MoreAccounts():
                await pages.more(self, client, chat)
            case Logout():
                chat.leaving = True
                await client.logout()
                self._write(f"Logged out {clean(chat.username)}.")
                return _Next.LOGIN_AGAIN
            case Delete():
                deleted = await delete_account(self, client, chat)
                if deleted is None:
                    return self._ended_by_server(chat)
                return _Next.LOGIN_AGAIN if deleted else None
            case ChangePassword():
                if not await change_password(self, client, chat):
                    return self._ended_by_server(chat)
            case Quit():
                chat.leaving = True
                return _Next.QUIT
        return None

    async def _send(
        self, client: ChatClient, chat: Chat, body: str, to: tuple[str, ...] | None = None
    ) -> None:
        """Send to ``to`` (default: the conversation), which then becomes the conversation;
        names the server does not know leave it. If nobody got it, the conversation stays."""
        recipients = chat.peers if to is None else to
        result = await client.send(recipients, body)
        note = format_send_result(recipients, result)
        if note:
            self._write(note)
        known = tuple(p for p in recipients if p not in result.unknown_recipients)
        if known or to is None:
            chat.peers = known

    # -- for ui.console_account and ui.console_pages -----------------------------------------
    @property
    def page_size(self) -> int:
        """Accounts per /list page."""
        return self._page_size

    def write(self, text: str) -> None:
        """Print one block of text for the person."""
        self._write(text)

    async def ask_in_chat(
        self, chat: Chat, message: PromptText, *, password: bool = False
    ) -> str | None:
        """A question during a chat (no history; no echo with ``password``); None if the
        session ended while it waited."""
        return await self._ask_in_chat(chat, message, password=password)

    # -- the one place that reads the keyboard ----------------------------------------------
    async def ask(
        self, message: PromptText, *, password: bool = False, chat_line: bool = False
    ) -> str:
        """Read one line. Raises EOFError on Ctrl-D, KeyboardInterrupt on Ctrl-C.

        ``chat_line`` selects the chat prompt (history, command completion); login prompts and
        confirmations use one without history.
        """
        session = self._chat_prompt if chat_line else self._auth_prompt
        assert session is not None, "ask() is only usable inside run()"
        return await session.prompt_async(message, is_password=password)


def _reply_all(delivery: Delivery, me: str) -> tuple[str, ...]:
    """Who "/reply" answers: everyone else in the message's conversation (Rule 21), but not
    a deleted sender, whose name may belong to someone else now (Rule 19)."""
    names = delivery.participants or (delivery.sender,)
    if delivery.sender_deleted:
        names = tuple(n for n in names if n != delivery.sender)
    return tuple(n for n in names if n != me) or ((me,) if delivery.sender == me else ())


def _is_command(answer: str, *words: str) -> bool:
    """``/quit`` (or ``quit``'s other words) typed at a login prompt."""
    return answer.strip().lower() in {f"/{word}" for word in words}


def _print(text: str) -> None:
    print(text, flush=True)


def _reason(exc: BaseException) -> str:
    """An OSError as a short phrase: ``Connection refused`` rather than ``[Errno 111] ...``."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


async def _close_quietly(client: ChatClient) -> None:
    try:
        await client.close()
    except Exception:  # closing a broken connection may fail; nothing is left to save
        log.debug("closing the client failed", exc_info=True)


__all__ = ["LIST_PAGE_SIZE", "Chat", "ClientFactory", "Console", "ServerUnreachable"]
