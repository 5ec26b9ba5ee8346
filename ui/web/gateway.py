"""The web gateway's chat side: one chat client per signed-in browser session.

Theory of operation
  * The gateway is a *client* of the chat server, like the console: each browser session that
    signs in gets its own :class:`core.client.ChatClient`, opened through the transport
    registry, so the web UI runs unchanged over any transport.
  * Every client lives on one asyncio loop in a background thread (:mod:`ui.web.loop`);
    Flask's request threads call into it with bounded timeouts. The methods here are the
    synchronous face of that loop; a command's failures reach the pages as one
    :class:`GatewayError` (signup/login let the server's :class:`core.errors.ChatError` through,
    since the sign-in pages show which one it was).
  * Rule 4: a failed signup or login ends the chat session, and the server closes the
    connection. Every attempt therefore opens a fresh connection and closes it on failure, so
    the person simply tries again on the same page.
  * History is the server's (Rules 20-25): pages read it with ``read_history`` and
    ``list_conversations`` when they load; the gateway keeps no messages.
  * A pump task per session drains ``client.events()`` (which acks each delivery as it is
    handed over) into the session's :class:`Feed`: deliveries, "sent by you" copies from
    other devices, deleted ids. Read marks, deletions and new messages also make the session's
    refresher ask the server for the conversation list again (a burst is coalesced into one
    call), so unread counts are always the server's and agree on every device; the pages'
    event streams wait on the feed. When the server ends the chat session (account deleted
    elsewhere, shutdown, too slow, lost connection) the pump ends and the browser session is
    signed out with that reason.
  * A message sent from one tab is put in the feed at once, so the browser's other tabs show
    it (the server sends "sent by you" copies only to the user's *other* sessions).
  * A lost connection to the chat server (a restart, even kill -9) does not sign anyone out
    (issue 13): each client comes from ``core.reconnect.reconnecting``, which reconnects with
    backoff and resumes the session with its resume token. The feed's status tells the open
    pages ("reconnecting...", then "reconnected"); they keep what they show, and the messages
    that waited arrive through the pump as usual, none twice (the client drops ids it has
    handed over). A command meanwhile fails with a sentence and the session stays. Only when
    the server refuses to resume (or stays away too long) does the pump end: signed out, with
    that reason.
  * The gateway never keeps a password: it is passed to login (or to change password and
    delete account) and dropped.
  * Bounds: at most ``max_sessions`` signed-in browser sessions, and at most
    ``max_sessions_per_address`` of them from one client address (signup is open, so without it
    one visitor could fill the gateway by signing up accounts in a loop). A sign-in past either
    bound is refused with :class:`GatewayFull`, which says which one and what to do; sessions
    already signed in are never evicted for a newcomer. A session with no request and no open
    page for ``idle_timeout`` seconds is signed out and its connection closed, which frees its
    place.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from core.client import ChatClient
from core.errors import ChatError, SessionClosed
from core.reconnect import (
    Backoff,
    ConnectionChange,
    GaveUp,
    Reconnecting,
    Resumed,
    reconnecting,
)
from core.types import (
    AccountPage,
    ConversationPage,
    Delivery,
    HistoryPage,
    LoginResult,
    MessagesDeleted,
    PasswordChanged,
    ReadMarker,
    SendResult,
    SentCopy,
)
from ui.web.feed import Feed
from ui.web.history import HISTORY_PAGE, SIDEBAR_PAGE
from ui.web.loop import LoopThread

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Why-you-were-signed-out notes kept for browsers that come back with a dead session key.
MAX_TOMBSTONES = 1024
#: Seconds the refresher waits after a change before asking for the conversation list, so a
#: burst of messages costs one round trip.
REFRESH_DELAY = 0.05


class GatewayError(Exception):
    """A failure to show to the person, as a sentence. ``signed_out``: the session is gone."""

    def __init__(self, message: str, *, signed_out: bool = False) -> None:
        super().__init__(message)
        self.signed_out = signed_out


class GatewayFull(GatewayError):
    """A sign-in refused because the gateway (or this address's share of it) is full."""


@dataclass(frozen=True)
class Limits:
    """Every bound of the gateway, with defaults suitable for a small team."""

    max_sessions: int = 100  # signed-in browser sessions (each holds a chat connection)
    # ... of them from one client address: a household or office behind one NAT address fits,
    # one visitor signing up accounts in a loop takes a fifth of the gateway at most.
    max_sessions_per_address: int = 20
    idle_timeout: float = 30 * 60.0  # seconds without a request or an open page
    # Open pages (event streams) per browser session. A browser opens at most 6 connections
    # to one host over HTTP/1.1 and each open page holds one, so 4 leaves room for requests.
    # A new page replaces the oldest stream: most often its tab is gone already (a closed
    # tab's stream is noticed only when its next heartbeat fails to write).
    max_streams: int = 4
    command_timeout: float = 10.0  # send, search, delete, logout
    # login waits for argon2 and, after repeated failures, the server's backoff (cap 8 s)
    login_timeout: float = 30.0


class Stream:
    """One open page's event stream; ``replaced`` tells it to end (see Limits.max_streams)."""

    __slots__ = ("replaced",)

    def __init__(self) -> None:
        self.replaced = False


class ChatSession:
    """One signed-in browser session: its chat client, its live feed, its open pages."""

    def __init__(
        self, key: str, username: str, client: ChatClient, feed: Feed, peer: str = ""
    ) -> None:
        self.key = key
        self.peer = peer  # the browser's address, for Limits.max_sessions_per_address
        self.username = username
        self.client = client
        self.feed = feed
        self.last_seen = time.monotonic()
        self.streams: list[Stream] = []  # open pages, oldest first; guarded by the gateway lock
        self.pump: asyncio.Task[None] | None = None
        self.refresher: asyncio.Task[None] | None = None
        self.dirty = asyncio.Event()  # set on the loop thread only: refresh the sidebar

    def __repr__(self) -> str:
        return f"<ChatSession {self.username!r} streams={len(self.streams)}>"


class Gateway:
    """Signed-in browser sessions and their chat clients (see the module docstring)."""

    def __init__(
        self,
        open_client: Callable[[], ChatClient],
        loop: LoopThread,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
    ) -> None:
        self._open_client = open_client  # called on the loop thread
        self._backoff = backoff  # reconnecting to the chat server (None: core.reconnect's)
        self._loop = loop
        self.limits = limits or Limits()
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, ChatSession] = {}
        self._opening: dict[str, int] = {}  # logins in flight per address, counted as sessions
        self._tombstones: OrderedDict[str, str] = OrderedDict()
        self._reaper: concurrent.futures.Future[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Gateway:
        """Start the idle-session reaper on the loop."""
        self._reaper = self._loop.submit(self._reap_forever())
        return self

    def close(self) -> None:
        """Sign everyone out and close every chat connection (gateway shutdown)."""
        if self._reaper is not None:
            self._reaper.cancel()
        with self._lock:
            chats = list(self._sessions.values())
            self._sessions.clear()
        for chat in chats:
            chat.feed.end("the web gateway is shutting down")
        if chats:
            self._run(self._close_all(chats, logout=True), self.limits.command_timeout)

    @property
    def live_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    # -- signing in and out ----------------------------------------------------------------
    def signup(
        self, username: str, password: str, peer: str = ""
    ) -> tuple[ChatSession, LoginResult]:
        """Create the account and sign in on a fresh chat connection; ``peer``: the
        browser's address (GatewayFull past the limits)."""
        return self._sign_in(username, password, create=True, peer=peer)

    def login(
        self, username: str, password: str, peer: str = ""
    ) -> tuple[ChatSession, LoginResult]:
        """Sign in on a fresh chat connection (a failed attempt closes it, Rule 4)."""
        return self._sign_in(username, password, create=False, peer=peer)

    def get(self, key: str | None) -> ChatSession | None:
        """The live session for a browser's key, marked as just seen; None if there is none."""
        if not key:
            return None
        with self._lock:
            chat = self._sessions.get(key)
            if chat is not None:
                chat.last_seen = self._clock()
            return chat

    def signed_out_reason(self, key: str | None) -> str | None:
        """Why the session with this key ended, if the gateway still remembers."""
        with self._lock:
            return self._tombstones.get(key) if key else None

    def logout(self, chat: ChatSession) -> None:
        """Log out and close the connection before returning, so that messages sent to this
        user from now on stay pending at the server."""
        if self._forget(chat, "you logged out"):
            self._run(self._close_client(chat, logout=True), self.limits.command_timeout)

    def expire_idle(self, now: float | None = None) -> int:
        """Sign out sessions idle longer than the limit now; returns how many. (The reaper
        task does the same every few minutes; tests call this with a clock of their own.)"""
        chats = self._select_idle(self._clock() if now is None else now)
        if chats:
            self._run(self._close_all(chats, logout=True), self.limits.command_timeout)
        return len(chats)

    # -- open pages ------------------------------------------------------------------------
    def open_stream(self, chat: ChatSession) -> Stream:
        """Register a page's event stream. Past the limit the oldest stream is told to end:
        most likely its tab is already gone."""
        stream = Stream()
        with self._lock:
            chat.streams.append(stream)
            replaced = chat.streams[: -self.limits.max_streams]
            del chat.streams[: -self.limits.max_streams]
        if replaced:
            for old in replaced:
                old.replaced = True
            chat.feed.wake()
        return stream

    def close_stream(self, chat: ChatSession, stream: Stream) -> None:
        with self._lock:
            if stream in chat.streams:
                chat.streams.remove(stream)
            chat.last_seen = self._clock()

    # -- commands --------------------------------------------------------------------------
    def send(self, chat: ChatSession, recipients: Sequence[str], body: str) -> SendResult:
        """Send; every open page of this browser session shows the message (the server
        copies it to the user's other devices itself, Rule 24)."""
        names = tuple(recipients)

        async def send() -> SendResult:
            result = await chat.client.send(names, body)
            unknown = set(result.unknown_recipients)
            known = [n for n in names if n not in unknown]
            if known:
                others = tuple(sorted({n for n in known if n != chat.username}))
                mine = Delivery(
                    result.message_id,
                    chat.username,
                    body,
                    result.sent_at_ms,
                    participants=others,
                    conversation_id=result.conversation_id,
                )
                chat.feed.message(mine, mine=True)
                chat.dirty.set()
            return result

        return self._call(chat, send)

    def conversations(self, chat: ChatSession, before_id: int = 0) -> ConversationPage:
        """A page of conversations (most recent first) with the server's unread counts."""

        async def list_page() -> ConversationPage:
            page = await chat.client.list_conversations(before_id, SIDEBAR_PAGE)
            if not before_id:  # the freshest list: every open page of this session shows it
                chat.feed.set_snapshot(page)
            return page

        return self._call(chat, list_page)

    def history(
        self,
        chat: ChatSession,
        *,
        conversation_id: int = 0,
        participants: Sequence[str] = (),
        before_id: int = 0,
    ) -> HistoryPage:
        """One page of a conversation's history, newest first."""

        async def read() -> HistoryPage:
            return await chat.client.read_history(
                tuple(participants), before_id, HISTORY_PAGE, conversation_id=conversation_id
            )

        return self._call(chat, read)

    def open_thread(
        self, chat: ChatSession, *, conversation_id: int = 0, participants: Sequence[str] = ()
    ) -> tuple[HistoryPage, ConversationPage]:
        """What a conversation's page needs, in one trip to the loop: its newest history,
        marked read up to its newest message (Rule 22), then the conversation list, so
        the sidebar already counts it read."""

        async def load() -> tuple[HistoryPage, ConversationPage]:
            page = await chat.client.read_history(
                tuple(participants), 0, HISTORY_PAGE, conversation_id=conversation_id
            )
            if page.conversation_id and page.messages:
                newest = page.messages[0].message_id
                if newest > page.read_up_to:
                    await chat.client.mark_read(page.conversation_id, newest)
                    chat.dirty.set()  # the browser's other tabs
            conversations = await chat.client.list_conversations(0, SIDEBAR_PAGE)
            chat.feed.set_snapshot(conversations)  # the freshest: every open page shows it
            return page, conversations

        return self._call(chat, load)

    def mark_read(self, chat: ChatSession, conversation_id: int, up_to_id: int) -> ReadMarker:
        """Mark read (Rule 22); the user's other devices are told by the server, this
        browser's other tabs by the refreshed sidebar."""

        async def mark() -> ReadMarker:
            marker = await chat.client.mark_read(conversation_id, up_to_id)
            chat.dirty.set()
            return marker

        return self._call(chat, mark)

    def delete_messages(
        self, chat: ChatSession, message_ids: Sequence[int], for_everyone: bool
    ) -> None:
        """Delete messages (Rule 23); the server tells every live session which ids went,
        this one included, and the pump passes that to every open page."""
        self._call(chat, chat.client.delete_messages, tuple(message_ids), for_everyone)

    def list_accounts(
        self, chat: ChatSession, pattern: str, after: str = "", limit: int = 0
    ) -> AccountPage:
        return self._call(chat, chat.client.list_accounts, pattern, after, limit)

    def change_password(
        self, chat: ChatSession, old: str, new: str, *, end_other_sessions: bool
    ) -> PasswordChanged:
        """Change the password (a wrong old one or a weak new one: GatewayError); with
        ``end_other_sessions`` the account's other sessions are signed out, this one stays."""
        return self._call(chat, chat.client.change_password, old, new, end_other_sessions)

    def delete_account(self, chat: ChatSession, password: str) -> None:
        """Delete the signed-in account (its password again: a wrong one is a GatewayError
        and nothing is deleted); the server ends every session of it (Rule 14)."""
        self._call(chat, chat.client.delete_account, chat.username, password)
        if self._forget(chat, "your account was deleted"):
            self._run(self._close_client(chat, logout=False), self.limits.command_timeout)

    # -- internals: the error seam ---------------------------------------------------------
    def _call(self, chat: ChatSession, method: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run one client command on the loop; map transport failures for the pages."""

        async def command() -> T:
            return await method(*args)

        try:
            return self._loop.run(command(), self.limits.command_timeout)
        except SessionClosed as exc:
            self._end(chat, str(exc))
            raise GatewayError(f"You were signed out: {exc}", signed_out=True) from exc
        except ChatError as exc:  # the server refused the command; its text is for a person
            raise GatewayError(str(exc)) from exc
        except TimeoutError as exc:
            raise GatewayError("the chat server did not answer in time; try again") from exc
        except (ConnectionError, OSError) as exc:
            self._end(chat, "the connection to the chat server was lost")
            raise GatewayError(
                "the connection to the chat server was lost; log in again", signed_out=True
            ) from exc

    def _run(self, coro: Awaitable[T], timeout: float) -> T | None:
        """Run housekeeping on the loop; a failure is logged, never shown."""

        async def wrapped() -> T:
            return await coro

        try:
            return self._loop.run(wrapped(), timeout)
        except Exception:
            log.exception("gateway housekeeping failed")
            return None

    # -- internals: sessions ---------------------------------------------------------------
    def _sign_in(
        self, username: str, password: str, *, create: bool, peer: str
    ) -> tuple[ChatSession, LoginResult]:
        with self._lock:
            self._check_room(peer)
            self._opening[peer] = self._opening.get(peer, 0) + 1
        try:
            return self._loop.run(
                self._open(username, password, create, peer), self.limits.login_timeout
            )
        except TimeoutError as exc:
            raise GatewayError("the chat server did not answer in time; try again") from exc
        except (ConnectionError, OSError) as exc:
            raise GatewayError(unreachable(exc)) from exc
        finally:
            with self._lock:
                self._opening[peer] -= 1
                if not self._opening[peer]:
                    del self._opening[peer]

    def _check_room(self, peer: str) -> None:
        """GatewayFull if one more session does not fit (the caller holds the lock)."""
        minutes = max(1, round(self.limits.idle_timeout / 60))
        total = len(self._sessions) + sum(self._opening.values())
        if total >= self.limits.max_sessions:
            raise GatewayFull(
                "this web gateway is full: it holds its limit of "
                f"{self.limits.max_sessions} signed-in sessions. Nobody is signed out to make "
                "room; a place frees up when someone logs out or after "
                f"{minutes} min without activity. Try again later"
            )
        mine = sum(1 for chat in self._sessions.values() if chat.peer == peer)
        if mine + self._opening.get(peer, 0) >= self.limits.max_sessions_per_address:
            raise GatewayFull(
                f"your address already has {self.limits.max_sessions_per_address} signed-in "
                "sessions on this web gateway, its limit per address. Log out of one "
                f"(or wait {minutes} min for an idle one to be signed out) and try again"
            )

    async def _open(
        self, username: str, password: str, create: bool, peer: str = ""
    ) -> tuple[ChatSession, LoginResult]:
        feed = Feed()
        opened: list[ChatSession] = []

        def changed(change: ConnectionChange) -> None:
            feed.set_status(*connection_status(change))
            if isinstance(change, Resumed) and opened:
                opened[0].dirty.set()  # notices may have been missed: ask for the list again

        client = reconnecting(self._open_client, backoff=self._backoff, on_change=changed)
        try:
            await client.connect()
            if create:
                result = await client.signup(username, password)
            else:
                result = await client.login(username, password)
        except BaseException:
            # Rule 4: the server has ended this session; the next attempt opens a new one.
            with contextlib.suppress(Exception):
                await client.close()
            raise
        chat = ChatSession(secrets.token_urlsafe(32), result.username, client, feed, peer)
        opened.append(chat)
        chat.last_seen = self._clock()
        with self._lock:
            self._sessions[chat.key] = chat
        chat.pump = asyncio.create_task(self._pump(chat), name=f"web-pump-{result.username}")
        chat.refresher = asyncio.create_task(
            self._refresh(chat), name=f"web-refresh-{result.username}"
        )
        chat.dirty.set()  # the first snapshot of the conversation list
        log.info("signed in %s (%d pending)", result.username, result.pending)
        return chat, result

    async def _pump(self, chat: ChatSession) -> None:
        """Hand every incoming event to the feed until the connection ends."""
        try:
            async for event in chat.client.events():
                if isinstance(event, Delivery):
                    chat.feed.message(event, mine=event.sender == chat.username)
                elif isinstance(event, SentCopy):
                    chat.feed.message(event.message, mine=True)
                elif isinstance(event, MessagesDeleted):
                    chat.feed.deleted(event.message_ids)
                chat.dirty.set()  # ReadMarker too: only the counts change
        except Exception as exc:  # an ack failed: the connection broke under us
            log.info("chat connection of %s failed: %s", chat.username, exc)
        reason = chat.client.closed_reason or "the connection to the chat server closed"
        if chat.refresher is not None:
            chat.refresher.cancel()
        if self._forget(chat, reason):
            log.info("chat session of %s ended by the server: %s", chat.username, reason)
            with contextlib.suppress(Exception):
                await chat.client.close()

    async def _refresh(self, chat: ChatSession) -> None:
        """Keep the feed's conversation list (unread counts) the server's, one call per burst."""
        while True:
            await chat.dirty.wait()
            await asyncio.sleep(REFRESH_DELAY)
            chat.dirty.clear()
            try:
                page = await chat.client.list_conversations(0, SIDEBAR_PAGE)
            except ChatError as exc:  # e.g. a transport that cannot list yet: keep the last
                log.info("conversation list of %s failed: %s", chat.username, exc)
                continue
            except (ConnectionError, OSError):
                return  # the pump notices the end and signs the session out
            chat.feed.set_snapshot(page)

    def _forget(self, chat: ChatSession, reason: str) -> bool:
        """Unregister a session and tell its pages; False if it was already gone."""
        with self._lock:
            if self._sessions.pop(chat.key, None) is None:
                return False
            self._tombstones[chat.key] = reason
            while len(self._tombstones) > MAX_TOMBSTONES:
                self._tombstones.popitem(last=False)
        chat.feed.end(reason)
        return True

    def _end(self, chat: ChatSession, reason: str) -> None:
        """Forget a session from a request thread and close its client in the background."""
        if self._forget(chat, reason):
            self._loop.submit(self._close_client(chat, logout=False))

    def _select_idle(self, now: float) -> list[ChatSession]:
        with self._lock:
            idle = [
                chat
                for chat in self._sessions.values()
                if not chat.streams and now - chat.last_seen > self.limits.idle_timeout
            ]
        minutes = max(1, round(self.limits.idle_timeout / 60))
        return [
            chat
            for chat in idle
            if self._forget(chat, f"you were signed out after {minutes} min without activity")
        ]

    async def _reap_forever(self) -> None:
        interval = max(1.0, min(60.0, self.limits.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            chats = self._select_idle(self._clock())
            if chats:
                log.info("signing out %d idle session(s)", len(chats))
                await self._close_all(chats, logout=True)

    async def _close_all(self, chats: Sequence[ChatSession], *, logout: bool) -> None:
        await asyncio.gather(*(self._close_client(chat, logout=logout) for chat in chats))

    async def _close_client(self, chat: ChatSession, *, logout: bool) -> None:
        """Log out (best effort) and close the connection; the pump then ends."""
        if logout:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.limits.command_timeout / 2):
                    await chat.client.logout()
        with contextlib.suppress(Exception):
            await chat.client.close()
        if chat.refresher is not None:
            chat.refresher.cancel()
        if chat.pump is not None and not chat.pump.done():
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.shield(chat.pump)
            except TimeoutError:
                chat.pump.cancel()
            except Exception:
                log.debug("pump of %s ended with an error", chat.username, exc_info=True)


def connection_status(change: ConnectionChange) -> tuple[str, str]:
    """The open pages' status line while the gateway restores its connection to the chat
    server: (state, sentence); state is "reconnecting", "resumed" or "gave-up"."""
    if isinstance(change, Reconnecting):
        return (
            "reconnecting",
            "The connection to the chat server was lost; reconnecting\u2026 "
            f"(attempt {change.attempt}, next in {change.delay:.1f} s)",
        )
    if isinstance(change, GaveUp):
        return "gave-up", f"Could not reconnect to the chat server: {change.reason}"
    waiting = "nothing was pending" if not change.pending else f"{change.pending} pending"
    return "resumed", f"Reconnected; {waiting}."


def unreachable(exc: BaseException) -> str:
    """What a failed connection to the chat server means, for a person. A transport's client
    raises ConnectionError with a sentence of its own when it recognised the problem (for
    example another protocol on that port); an OS error is put in plain words here."""
    import errno

    code = getattr(exc, "errno", None)
    if code == errno.ECONNREFUSED:
        return (
            "cannot reach the chat server: nothing is listening at its address. "
            "Is it running (`make server`), and is the web gateway's --server right?"
        )
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT):
        return "cannot reach the chat server: its host does not answer. Check --server"
    if isinstance(exc, ConnectionError) and code is None and str(exc):
        return f"cannot reach the chat server: {exc}"
    return f"cannot reach the chat server ({exc})"


__all__ = [
    "ChatSession",
    "Gateway",
    "GatewayError",
    "GatewayFull",
    "Limits",
    "Stream",
    "connection_status",
    "unreachable",
]
