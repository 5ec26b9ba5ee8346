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
  * A command or sign-in the chat server shed as overloaded (nothing was done) is retried a
    few times within about 2 s before its sentence reaches the page (:mod:`ui.web.patience`):
    a person's click is not lost to a passing burst of load.
  * The gateway never keeps a password: it is passed to login (or to change password and
    delete account) and dropped.
  * Bounds: at most ``max_sessions`` signed-in browser sessions, and at most
    ``max_sessions_per_address`` of them from one client address (signup is open, so without it
    one visitor could fill the gateway by signing up accounts in a loop). A sign-in past either
    bound is refused with :class:`GatewayFull`, which says which one and what to do; sessions
    already signed in are never evicted for a newcomer. A session with no request and no open
    page for ``idle_timeout`` seconds is signed out and its connection closed, which frees its
    place.

Where the rest lives: :mod:`ui.web.chat_session` (a session, its pages, the limits, the
errors), :mod:`ui.web.commands` (the chat commands and their error seam),
:mod:`ui.web.session_tasks` (a session's pump, refresher and closing, on the loop),
:mod:`ui.web.connection_text` (the connection to the chat server in a person's words).
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
from typing import TypeVar

from core.client import ChatClient
from core.reconnect import Backoff, ConnectionChange, Resumed, reconnecting
from core.types import LoginResult
from ui.web import session_tasks
from ui.web.chat_session import ChatSession, GatewayError, GatewayFull, Limits, Stream
from ui.web.commands import Commands
from ui.web.connection_text import connection_status, unreachable
from ui.web.feed import Feed
from ui.web.loop import LoopThread
from ui.web.patience import retry_shed

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Why-you-were-signed-out notes kept for browsers that come back with a dead session key.
MAX_TOMBSTONES = 1024


class Gateway(Commands):
    """Signed-in browser sessions and their chat clients (see the module docstring); the
    chat commands are :class:`ui.web.commands.Commands`'."""

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

    # -- ending a session ------------------------------------------------------------------
    def delete_account(self, chat: ChatSession, password: str) -> None:
        """Delete the signed-in account (its password again: a wrong one is a GatewayError
        and nothing is deleted); the server ends every session of it (Rule 14)."""
        self._call(chat, chat.client.delete_account, chat.username, password)
        if self._forget(chat, "your account was deleted"):
            self._run(self._close_client(chat, logout=False), self.limits.command_timeout)

    # -- internals: housekeeping -----------------------------------------------------------
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
        """Sign in on a fresh connection; a try the server shed is made again on a new one
        (:mod:`ui.web.patience`)."""
        return await retry_shed(lambda: self._open_once(username, password, create, peer))

    async def _open_once(
        self, username: str, password: str, create: bool, peer: str
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
        chat.pump = asyncio.create_task(
            session_tasks.pump(chat, self._forget), name=f"web-pump-{result.username}"
        )
        chat.refresher = asyncio.create_task(
            session_tasks.refresh(chat), name=f"web-refresh-{result.username}"
        )
        chat.dirty.set()  # the first snapshot of the conversation list
        log.info("signed in %s (%d pending)", result.username, result.pending)
        return chat, result

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
        await session_tasks.close_client(chat, logout=logout, timeout=self.limits.command_timeout)


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
