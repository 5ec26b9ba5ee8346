"""Session tokens: what a connection is to the custom transport, a token is to gRPC.

A token is 128 random bits (``secrets``), issued by a successful Signup/Login, and maps to one
core Session. Entries leave the table three ways:

* the session's Subscribe stream is cancelled: the servicer closes the session (the client
  went away), and the next sweep forgets the token;
* the session ended for another reason (deleted, too slow, shutdown): the next sweep forgets
  the token; a stream still stuck writing to a client that stopped reading is cancelled
  at the sweep after that (its status had a whole sweep period to get out);
* no open stream and no rpc for ``idle_timeout``: the sweep closes the session (idle expiry).

The sweep is one task waking ``idle_timeout / 4`` apart, so the per-call cost of all this is a
dict lookup and one clock read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING

from core.errors import NotLoggedIn, SessionClosed
from transports.grpc._wire import IDLE_TIMEOUT, TOKEN_BYTES

if TYPE_CHECKING:
    from core.service import ChatService
    from core.session import Session

log = logging.getLogger(__name__)


def new_token() -> str:
    """128 random bits as 22 characters of unpadded base64url (ASCII: a valid header value)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


class Entry:
    """One token's session, when it was last used, and its Subscribe stream if open."""

    __slots__ = ("doomed", "last_used", "session", "stream")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.last_used = time.monotonic()
        self.stream: asyncio.Task[object] | None = None
        self.doomed = False  # the session was closed while its stream was still open


class SessionTable:
    """Tokens -> sessions of one gRPC server, with idle expiry."""

    def __init__(self, service: ChatService, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._service = service
        self.idle_timeout = idle_timeout
        self._entries: dict[str, Entry] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def issue(self, session: Session) -> str:
        """A fresh token for a session that just logged in."""
        token = new_token()
        self._entries[token] = Entry(session)
        return token

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
        self._entries.clear()

    def sweep(self) -> int:
        """Forget ended sessions, expire idle ones; returns how many were expired."""
        deadline = time.monotonic() - self.idle_timeout
        expired = 0
        for token, entry in list(self._entries.items()):
            session = entry.session
            if entry.stream is not None and not entry.stream.done():
                if session.closed:
                    if entry.doomed:
                        log.info("cancelling the stuck stream of ended session %d", session.id)
                        entry.stream.cancel()
                    entry.doomed = True
                continue
            if not session.closed and entry.last_used <= deadline:
                log.debug("session %d idle for %.0f s: closing", session.id, self.idle_timeout)
                self._service.close_session(session)
                expired += 1
            if session.closed:
                del self._entries[token]
        return expired

    async def _sweep_forever(self) -> None:
        interval = max(self.idle_timeout / 4, 0.01)
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
            except Exception:  # never let one bad entry stop expiry for good
                log.exception("session sweep failed")
