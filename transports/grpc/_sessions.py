"""Session tokens: what a connection is to the custom transport, a token is to gRPC.

A token is 128 random bits (``secrets``), issued by a successful Signup/Login, and maps to one
core Session. Entries leave the table three ways:

* the session's Subscribe stream is cancelled: the servicer closes the session (the client
  went away), and the next sweep forgets the token;
* the session ended for another reason (deleted, too slow, shutdown): the next sweep forgets
  the token; a stream still stuck writing to a client that stopped reading is cancelled
  at the sweep after that (its status had a whole sweep period to get out);
* no open stream and no rpc for ``idle_timeout`` (``anonymous_timeout`` if it is logged out):
  the sweep closes the session (idle expiry);
* a push has been writing for ``stall_timeout`` (the client stopped reading): the session
  ends as a slow consumer and its stream is cancelled (``stalled``, checked four times per
  stall timeout; a stream marks itself in ``writing`` around each write, a dict insert and
  delete per push).

Each entry holds one admission of the server's Guard (its client IP counted against the
connection caps, see _limits): given back exactly once, as soon as the table sees the session
closed (``release``: from the stream's end, a failed login, or the sweep).

The sweep is one task waking a quarter of the shorter timeout apart, so the per-call cost of all
this is a dict lookup and one clock read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING

from core.errors import NotLoggedIn, SessionClosed
from core.types import CloseReason
from transports.grpc._wire import IDLE_TIMEOUT, TOKEN_BYTES

if TYPE_CHECKING:
    from collections.abc import Callable

    from core.service import ChatService
    from core.session import Session

log = logging.getLogger(__name__)

#: Default stall timeout (seconds) when no ServerLimits is given (its own default).
STALL_TIMEOUT = 30.0


def new_token() -> str:
    """128 random bits as 22 characters of unpadded base64url (ASCII: a valid header value)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


class Entry:
    """One token's session, when it was last used, and its Subscribe stream if open."""

    __slots__ = ("admitted", "doomed", "last_used", "peer", "session", "stream")

    def __init__(self, session: Session, peer: str | None, *, admitted: bool) -> None:
        self.session = session
        self.peer = peer  # the client IP counted by the Guard
        self.admitted = admitted  # holds one Guard admission until released
        self.last_used = time.monotonic()
        self.stream: asyncio.Task[object] | None = None
        self.doomed = False  # the session was closed while its stream was still open


class SessionTable:
    """Tokens -> sessions of one gRPC server, with idle expiry."""

    def __init__(
        self,
        service: ChatService,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        anonymous_timeout: float | None = None,
        stall_timeout: float = STALL_TIMEOUT,
        release: Callable[[str | None], None] | None = None,
    ) -> None:
        self._service = service
        self.idle_timeout = idle_timeout
        #: Idle expiry of a session that is logged out (the server's no-session timeout).
        self.anonymous_timeout = idle_timeout if anonymous_timeout is None else anonymous_timeout
        #: Seconds one push may take to leave before its reader is a slow consumer.
        self.stall_timeout = stall_timeout
        #: Entries whose stream is writing a push right now -> when that write began.
        self.writing: dict[Entry, float] = {}
        self._release = release  # gives one Guard admission back
        self._entries: dict[str, Entry] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def issue(self, session: Session, peer: str | None = None, *, admitted: bool = False) -> str:
        """A fresh token for a session that just logged in (``admitted``: it holds a Guard
        admission for ``peer``, to be released once)."""
        token = new_token()
        self._entries[token] = Entry(session, peer, admitted=admitted)
        return token

    def release(self, entry: Entry) -> None:
        """The entry's session has closed: give its Guard admission back (once)."""
        if entry.admitted:
            entry.admitted = False
            if self._release is not None:
                self._release(entry.peer)

    def entry(self, token: str | None) -> Entry:
        """The entry for a request's token; marks it used. Raises if there is none."""
        if token is None:
            raise NotLoggedIn()
        entry = self._entries.get(token)
        if entry is None:
            raise SessionClosed("unknown session token: log in again")
        entry.last_used = time.monotonic()
        return entry

    def start(self) -> None:
        """Start the sweeper on the running loop."""
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="grpc-session-sweeper")

    async def close(self) -> None:
        """Stop sweeping and close every session still in the table."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self.close_all()

    def close_all(self) -> None:
        """Close every session in the table and forget the tokens."""
        for entry in self._entries.values():
            self._service.close_session(entry.session)
            self.release(entry)
        self._entries.clear()

    def sweep(self) -> int:
        """Forget ended sessions, expire idle ones; returns how many were expired."""
        now = time.monotonic()
        expired = 0
        for token, entry in list(self._entries.items()):
            session = entry.session
            if entry.stream is not None and not entry.stream.done():
                if session.closed:
                    self.release(entry)  # its stream is stuck, but the session holds nothing
                    if entry.doomed:
                        log.info("cancelling the stuck stream of ended session %d", session.id)
                        entry.stream.cancel()
                    entry.doomed = True
                continue
            timeout = self.idle_timeout if session.active else self.anonymous_timeout
            if not session.closed and entry.last_used <= now - timeout:
                log.debug("session %d idle for %.0f s: closing", session.id, timeout)
                self._service.close_session(session)
                expired += 1
            if session.closed:
                self.release(entry)
                del self._entries[token]
        return expired

    def stalled(self) -> int:
        """End the sessions whose push has not left for ``stall_timeout`` (the client stopped
        reading and HTTP/2 flow control holds the write) as slow consumers, and cancel their
        streams (which resets them: nothing more is held for them). Returns how many."""
        deadline = time.monotonic() - self.stall_timeout
        stuck = [entry for entry, since in self.writing.items() if since <= deadline]
        for entry in stuck:
            del self.writing[entry]
            log.info("session %d reads too slowly; ending it", entry.session.id)
            self._service.close_session(entry.session, CloseReason.SLOW_CONSUMER)
            self.release(entry)
            if entry.stream is not None:
                entry.stream.cancel()
        return len(stuck)

    async def _sweep_forever(self) -> None:
        period = max(min(self.idle_timeout, self.anonymous_timeout) / 4, 0.01)
        interval = min(period, max(self.stall_timeout / 4, 0.01))
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                self.stalled()
                if time.monotonic() - last >= period:
                    last = time.monotonic()
                    self.sweep()
            except Exception:  # never let one bad entry stop expiry for good
                log.exception("session sweep failed")
