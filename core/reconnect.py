"""Clients that survive a lost connection: reconnect with backoff, then Resume (issue 13).

``reconnecting(open_client)`` returns an ordinary :class:`core.client.ChatClient` whose
transport is a :class:`ResumingTransport`: a transport made of transports. The console and
the web gateway use it exactly as any ChatClient; only what happens when the connection goes
is different.

Theory of operation
  * Requests travel over the current connection, a transport taken from ``open_client()``
    (any transport in the registry). When that connection is lost while the session is
    logged in, the ChatClient above is *not* told: its state lives on (logged in, the message
    ids it already handed over, its queue of events). This transport opens a new connection,
    waiting before each attempt with capped exponential backoff and full jitter (a random
    delay between 0 and min(cap, first * 2**(attempt - 1)): AWS's "Exponential Backoff And
    Jitter", Brooker 2015, the variant that spreads a crowd of clients best after a server
    restart), and logs in with ``Resume`` and the latest resume token, without the password.
  * "Lost" means: the connection broke (``connection_lost`` with a reason: kill -9, a reset,
    a network failure), or the server ended the session for a reason that is not the
    person's: it is shutting down (a restart), it found the client too slow (pending
    messages are kept), the connection closed. A session ended on purpose (logged out, the
    account deleted, the password changed elsewhere, a failed login) is final: the ChatClient
    is told as before. No token (never logged in, logged out, a server too old to issue one):
    nothing to resume, the ChatClient is told as before.
  * Nothing lost, nothing twice (Rules 11-12): a message pushed but not acked before the loss
    is pending at the server and pushed again after the resume. The ChatClient drops ids it
    has already taken in (its dedup window), so the application sees each message once. If
    the application had already been handed it, its ack may not have reached the server (an
    ack in flight when the server died, or one refused while reconnecting): this transport
    remembers the ids acked through it (bounded) and acks such a repeat again itself, or it
    would stay pending for ever.
  * Pushes that arrive on a new connection before its Resume reply is read (the pending
    messages follow the reply at once) are held back, and handed on after the application has
    been told :class:`Resumed`, so "reconnected; 2 pending" comes before the two messages.
  * Requests: one in flight when the connection went fails with :class:`ConnectionInterrupted`
    ("it may or may not have been done"); one made while reconnecting fails at once with the
    same error ("nothing was sent"). Neither waits for the reconnection, so nothing hangs.
    ConnectionInterrupted is a ``ChatError`` (the command failed; show the sentence and carry
    on) and a ``ConnectionError``.
  * The application is told through ``on_change``: :class:`Reconnecting` (attempt, delay)
    before each attempt, :class:`Resumed` (pending count), or :class:`GaveUp` (reason) when the
    server refused the token (log in again with the password) or could not be reached within
    ``Backoff.give_up_after``. After GaveUp the ChatClient's session is over as before: its
    events end and ``closed_reason`` is the same sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from core import requests as rq
from core.client import DEDUP_WINDOW, ChatClient, ClientEvents, ClientTransport
from core.errors import AuthFailed, ChatError, SessionClosed, TooManyAttempts
from core.limits import MAX_ACK_IDS
from core.types import CloseReason, Delivery, LoginResult, Notice, PasswordChanged

log = logging.getLogger(__name__)
R = TypeVar("R")

#: Session ends that are not the person's doing: the session can be resumed after them.
RESUMABLE_ENDS = frozenset(
    {
        CloseReason.SHUTDOWN.value,  # a restart: the server comes back
        CloseReason.SLOW_CONSUMER.value,  # pending messages are kept for the next session
        CloseReason.DISCONNECTED.value,
    }
)

#: What a request fails with while the client is reconnecting (nothing was sent).
NOT_CONNECTED_NOW = (
    "not connected to the server right now (reconnecting), so this was not sent; "
    "try again once reconnected"
)
#: What a request in flight when the connection went fails with.
LOST_IN_FLIGHT = (
    "the connection was lost before the server answered; reconnecting. "
    "It may or may not have been done"
)


class ConnectionInterrupted(ChatError, ConnectionError):
    """The connection was lost while logged in and the client is reconnecting: this command
    failed (see the sentence: not sent, or not known), the session goes on."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """When to try again: before attempt n wait a random time in [0, min(cap, first * 2**(n-1))]
    seconds ("full jitter"); stop after ``give_up_after`` seconds or ``max_attempts``."""

    first: float = 0.25  # a restart that takes a second is noticed within about a second
    cap: float = 10.0  # a long outage costs the server one attempt per client per ~5 s
    give_up_after: float = 300.0  # then the person is told and logs in again later
    max_attempts: int | None = None  # None: bounded by time only
    attempt_timeout: float = 15.0  # connect + Resume; a server that accepts but never answers

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before attempt number ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.first * 2 ** min(attempt - 1, 62))
        return rand() * ceiling

    def exhausted(self, attempt: int, elapsed: float) -> bool:
        """True if attempt ``attempt`` would start after the limits (elapsed: seconds so far,
        including the wait before it)."""
        if self.max_attempts is not None and attempt > self.max_attempts:
            return True
        return elapsed > self.give_up_after


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The connection is lost; attempt ``attempt`` starts in ``delay`` seconds. ``reason``:
    why the connection went, or why the previous attempt failed."""

    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class Resumed:
    """The session is back on a new connection; ``pending`` messages follow (some may be
    ones already shown: the client drops those)."""

    pending: int
    attempts: int


@dataclass(frozen=True, slots=True)
class GaveUp:
    """No more attempts: ``reason`` is a sentence for a person. ``login_needed``: the server
    refused the token (log in with the password); else it could not be reached in time."""

    reason: str
    login_needed: bool


ConnectionChange = Reconnecting | Resumed | GaveUp
OnChange = Callable[[ConnectionChange], None]


def reconnecting(
    open_client: Callable[[], ChatClient],
    *,
    backoff: Backoff | None = None,
    on_change: OnChange | None = None,
) -> ChatClient:
    """A ChatClient over the connections ``open_client()`` makes (one now, more after a loss),
    with the same ``auto_ack`` as the clients it returns. Call ``connect()`` as usual."""
    first = open_client()
    transport = ResumingTransport(
        open_client, backoff=backoff, on_change=on_change, first=first.transport
    )
    return ChatClient(transport, auto_ack=first.auto_ack)


class _Link:
    """The ClientEvents of one connection. Pushes go on to the ChatClient while this is the
    current connection; before its Resume is answered they are held (``held``)."""

    __slots__ = ("dead", "held", "owner", "transport")

    def __init__(self, owner: ResumingTransport, transport: ClientTransport) -> None:
        self.owner = owner
        self.transport = transport
        self.held: list[Delivery | Notice] | None = []  # None: live, pass pushes on
        self.dead: str | None = None  # why it ended before it became the current one

    def delivered(self, delivery: Delivery) -> None:
        owner = self.owner
        if delivery.message_id in owner.acked:
            owner.ack_again(self, delivery.message_id)
        if self.held is not None:
            self.held.append(delivery)
        elif owner.link is self:
            owner.events.delivered(delivery)

    def notified(self, notice: Notice) -> None:
        if self.held is not None:
            self.held.append(notice)
        elif self.owner.link is self:
            self.owner.events.notified(notice)

    def session_ended(self, reason: str) -> None:
        self.owner.link_ended(self, reason, by_server=True)

    def connection_lost(self, reason: str | None) -> None:
        self.owner.link_ended(self, reason, by_server=False)


class ResumingTransport:
    """A ClientTransport that reconnects and resumes (see the module docstring)."""

    def __init__(
        self,
        open_client: Callable[[], ChatClient],
        *,
        backoff: Backoff | None = None,
        on_change: OnChange | None = None,
        first: ClientTransport | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.open_client = open_client
        self.backoff = backoff or Backoff()
        self.on_change = on_change
        self.rand = rand
        self.token = ""  # the latest resume token: "" while there is nothing to resume
        self.link: _Link | None = None  # the current connection (None while reconnecting)
        #: Ids acked through this transport (bounded): a repeat after a resume is acked again.
        self.acked: OrderedDict[int, None] = OrderedDict()
        self.reconnecting_now: Reconnecting | None = None  # the latest, while reconnecting
        self._first = first
        self._events: ClientEvents | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._told_lost = False
        self._reack: set[int] = set()

    @property
    def events(self) -> ClientEvents:
        assert self._events is not None, "connect() first"
        return self._events

    # -- ClientTransport -------------------------------------------------------------------
    async def connect(self, events: ClientEvents) -> None:
        """Open the first connection (OSError/ConnectionError if unreachable, as any)."""
        if self._events is not None:
            raise RuntimeError("connect() was already called; open a new client to reconnect")
        self._events = events
        first, self._first = self._first, None
        link = _Link(self, first if first is not None else self.open_client().transport)
        link.held = None
        self.link = link
        await link.transport.connect(link)

    async def request(self, request: rq.Request[R]) -> R:
        """Carry ``request`` on the current connection; ConnectionInterrupted while
        reconnecting or if the connection goes before the reply."""
        link = self.link
        if link is None:
            if self._task is not None and not self._task.done():
                self._ack_failed(request)  # (handed over while reconnecting)
                raise ConnectionInterrupted(NOT_CONNECTED_NOW)
            raise ConnectionError("not connected")
        try:
            result = await link.transport.request(request)
        except ConnectionInterrupted:
            raise
        except ConnectionError as exc:
            self._ack_failed(request)
            if self._resumable():
                raise ConnectionInterrupted(LOST_IN_FLIGHT) from exc
            raise
        except SessionClosed as exc:
            if str(exc).removeprefix("session ended: ") in RESUMABLE_ENDS and self._resumable():
                self._ack_failed(request)
                raise ConnectionInterrupted(LOST_IN_FLIGHT) from exc
            raise
        if isinstance(request, rq.Ack):
            self._remember_acked(request.message_ids)
        elif request.changes_session:
            self._answered(request, result)
        return result

    async def close(self) -> None:
        """Stop reconnecting and close the connection; reports connection_lost(None)."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        link = self.link
        if link is not None:
            await link.transport.close()  # its connection_lost(None) is passed on
        self._tell_lost(None)

    # -- what the current connection reports -----------------------------------------------
    def link_ended(self, link: _Link, reason: str | None, *, by_server: bool) -> None:
        """A connection's session or connection ended (see the module docstring)."""
        if link is not self.link:
            if link.dead is None:
                link.dead = reason or "the connection closed"
            return  # a candidate (its attempt notices) or an old connection: no news
        if reason is not None and not self._closing and self._resumable():
            if not by_server or reason in RESUMABLE_ENDS:
                self._start_reconnecting(link, reason)
                return
        if by_server:
            self.token = ""  # ended on purpose: nothing to resume
            self.events.session_ended(reason or "the session ended")
        else:
            self._tell_lost(reason)

    def _resumable(self) -> bool:
        return bool(self.token) and not self._closing

    def _tell_lost(self, reason: str | None) -> None:
        if not self._told_lost:
            self._told_lost = True
            self.events.connection_lost(reason)

    def _answered(self, request: rq.Request[Any], result: object) -> None:
        """Keep the latest resume token (the ChatClient keeps its own for the application)."""
        if isinstance(result, LoginResult):
            self.token = result.resume_token
        elif isinstance(result, PasswordChanged):
            self.token = result.resume_token or self.token
        elif isinstance(request, rq.Logout | rq.DeleteAccount):
            self.token = ""

    # -- acks ------------------------------------------------------------------------------
    def _remember_acked(self, ids: tuple[int, ...]) -> None:
        for message_id in ids:
            self.acked[message_id] = None
            self.acked.move_to_end(message_id)
        while len(self.acked) > DEDUP_WINDOW:
            self.acked.popitem(last=False)

    def _ack_failed(self, request: rq.Request[Any]) -> None:
        """An ack that did not reach the server still counts as handed over."""
        if isinstance(request, rq.Ack):
            self._remember_acked(request.message_ids)

    def ack_again(self, link: _Link, message_id: int) -> None:
        """A message the application was handed came again: its ack was lost. Ack it on
        this connection (batched to the end of this loop iteration)."""
        if not self._reack:
            asyncio.get_running_loop().call_soon(self._send_reacks, link)
        self._reack.add(message_id)

    def _send_reacks(self, link: _Link) -> None:
        ids, self._reack = sorted(self._reack), set()
        for start in range(0, len(ids), MAX_ACK_IDS):
            chunk = tuple(ids[start : start + MAX_ACK_IDS])
            task = asyncio.ensure_future(_quietly(link.transport.request(rq.Ack(chunk))))
            _background.add(task)
            task.add_done_callback(_background.discard)

    # -- reconnecting ----------------------------------------------------------------------
    def _start_reconnecting(self, link: _Link, reason: str) -> None:
        self.link = None
        log.info("connection lost (%s); reconnecting", reason)
        self._task = asyncio.get_running_loop().create_task(
            self._reconnect(link, reason), name="wirechat-reconnect"
        )

    async def _reconnect(self, old: _Link, reason: str) -> None:
        try:
            await self._reconnect_until_done(old, reason)
        except Exception as exc:  # a bug: never leave the client reconnecting for ever
            log.exception("reconnecting failed")
            self.link = None
            self._give_up(f"the client failed while reconnecting: {exc!r}", login_needed=False)

    async def _reconnect_until_done(self, old: _Link, reason: str) -> None:
        with contextlib.suppress(Exception):
            await old.transport.close()  # whatever is left of it; its news is ignored
        loop = asyncio.get_running_loop()
        started = loop.time()
        why: str | _Wait = reason
        attempt = 0
        while True:
            attempt += 1
            delay = self.backoff.delay(attempt, self.rand)
            if isinstance(why, _Wait):
                delay = max(delay, why.seconds)
            if self.backoff.exhausted(attempt, loop.time() - started + delay):
                waited = round(loop.time() - started)
                self._give_up(
                    f"the server could not be reached again for {waited} s ({why})",
                    login_needed=False,
                )
                return
            note = Reconnecting(attempt, delay, str(why))
            self.reconnecting_now = note
            self._tell(note)
            await asyncio.sleep(delay)
            outcome = await self._attempt()
            if isinstance(outcome, tuple):
                link, result = outcome
                self._adopt(link, result, attempt)
                return
            if isinstance(outcome, _Refused):
                self._give_up(outcome.reason, login_needed=True)
                return
            why = outcome

    async def _attempt(self) -> tuple[_Link, LoginResult] | _Refused | _Wait | str:
        """One connection and Resume: the new link, or why not."""
        link = _Link(self, self.open_client().transport)
        try:
            async with asyncio.timeout(self.backoff.attempt_timeout):
                await link.transport.connect(link)
                result = await link.transport.request(rq.Resume(self.token))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await link.transport.close()
            if isinstance(exc, TooManyAttempts):
                return _Wait(str(exc), exc.retry_after)
            if isinstance(exc, AuthFailed):  # ResumeRefused: expired, revoked
                return _Refused(str(exc))
            if isinstance(exc, TimeoutError):
                return "the server did not answer in time"
            if isinstance(exc, OSError):  # ConnectionError, refused, reset, ...
                return _describe(exc)
            if isinstance(exc, ChatError | TypeError):  # e.g. a server without Resume
                return _Refused(str(exc) or type(exc).__name__)
            if not isinstance(exc, Exception):
                raise  # cancelled (close())
            log.warning("reconnecting: an attempt failed unexpectedly", exc_info=True)
            return str(exc) or type(exc).__name__
        if link.dead is not None:
            with contextlib.suppress(Exception):
                await link.transport.close()
            return link.dead
        return link, result

    def _adopt(self, link: _Link, result: LoginResult, attempts: int) -> None:
        """The new connection becomes the current one; held pushes go on after Resumed."""
        self.token = result.resume_token or self.token
        held, link.held = link.held or [], None
        self.link = link
        self.reconnecting_now = None
        log.info("resumed after %d attempt(s); %d pending", attempts, result.pending)
        self._tell(Resumed(result.pending, attempts))
        for item in held:
            if isinstance(item, Delivery):
                self.events.delivered(item)
            else:
                self.events.notified(item)

    def _give_up(self, reason: str, *, login_needed: bool) -> None:
        """Tell the application, then end the ChatClient's session with a sentence."""
        self.token = ""
        self.reconnecting_now = None
        log.info("gave up reconnecting: %s", reason)
        self._tell(GaveUp(reason, login_needed))
        if login_needed:
            said = f"the connection was lost and the session could not be resumed: {reason}"
            self.events.session_ended(said)
        else:
            said = f"the connection was lost: {reason}"
        self._tell_lost(said)

    def _tell(self, change: ConnectionChange) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(change)
        except Exception:  # the application's bug must not stop the reconnection
            log.exception("on_change failed for %r", change)


@dataclass(frozen=True, slots=True)
class _Refused:
    reason: str


@dataclass(frozen=True, slots=True)
class _Wait:
    """The server asked us to wait (TooManyAttempts) before trying again."""

    reason: str
    seconds: float

    def __str__(self) -> str:
        return self.reason


_background: set[asyncio.Future[None]] = set()


async def _quietly(request: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):
        await request


def _describe(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: the server is not running (yet)"
    return str(exc) or type(exc).__name__


__all__ = [
    "LOST_IN_FLIGHT",
    "NOT_CONNECTED_NOW",
    "RESUMABLE_ENDS",
    "Backoff",
    "ConnectionChange",
    "ConnectionInterrupted",
    "GaveUp",
    "OnChange",
    "Reconnecting",
    "Resumed",
    "ResumingTransport",
    "reconnecting",
]
