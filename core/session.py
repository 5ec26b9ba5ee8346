"""A session: one client's view of the service (a custom-protocol connection, a gRPC token,
a loopback client).

Lifecycle as a table, h11-style: every (state, event) pair that is allowed is listed; any
other pair is a bug in the caller and raises. ``ANONYMOUS`` may log in; ``ACTIVE`` is logged in;
``CLOSED`` is final (a failed signup/login, account deleted, too slow, disconnected).

Delivery (Rules 10-13). At login the session registers for live pushes *first*, then
``deliveries()`` reads the user's pending messages from the store page by page (oldest first)
and only then yields the live queue, skipping ids it already yielded from the store. Because a
message is stored before it is pushed and ids increase, this yields every pending message once,
in id order, with nothing newer overtaking older (Rule 12).

Notices (Rules 22-24). Besides deliveries the service pushes notices into the same live queue:
``SentCopy`` (a message this user sent from another session), ``ReadMarker`` (another session
marked a conversation read) and ``MessagesDeleted`` (ids gone from this user's history).
``events()`` yields the backlog, then deliveries and notices in the order the service pushed
them (commit order), so a client never sees "gone" before the message it removes.
``deliveries()`` is ``events()`` without the notices, for transports that do not carry them.
A notice counts against the session's queue limit like a delivery (Rule 17).

The live queue is bounded twice (Rule 17): by items (``MAX_SESSION_QUEUE``) and by bytes
(``MAX_SESSION_QUEUE_BYTES``: UTF-8 bytes of the bodies plus ``QUEUE_ITEM_OVERHEAD`` per item),
so a slow reader of large messages cannot pin hundreds of MiB. Either overflow makes ``_push``
refuse, and the service ends the session (SLOW_CONSUMER); its messages stay pending.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

from core import limits
from core.types import CloseReason, Delivery, MessagesDeleted, Notice, SentCopy, SessionEvent

if TYPE_CHECKING:
    from core.pacing import Pacer
    from core.store import Store


class State(enum.Enum):
    ANONYMOUS = "anonymous"
    ACTIVE = "active"
    CLOSED = "closed"


class Event(enum.Enum):
    LOGGED_IN = "logged in"  # signup or login succeeded
    AUTH_FAILED = "auth failed"  # signup or login failed: Rule 4 ends the session
    LOGGED_OUT = "logged out"
    ENDED = "ended"  # deleted, too slow, shutdown, disconnected


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.ANONYMOUS, Event.LOGGED_IN): State.ACTIVE,
    (State.ANONYMOUS, Event.AUTH_FAILED): State.CLOSED,
    (State.ANONYMOUS, Event.ENDED): State.CLOSED,
    (State.ACTIVE, Event.LOGGED_OUT): State.ANONYMOUS,
    (State.ACTIVE, Event.ENDED): State.CLOSED,
    (State.CLOSED, Event.ENDED): State.CLOSED,
}


class InvalidTransition(RuntimeError):
    """A caller drove a session through a pair not in TRANSITIONS (a bug, not bad input)."""


_ids = itertools.count(1)

#: The queue's bounds (Rule 17), read on every push.
_MAX_QUEUE = limits.MAX_SESSION_QUEUE
_MAX_QUEUE_BYTES = limits.MAX_SESSION_QUEUE_BYTES
_OVERHEAD = limits.QUEUE_ITEM_OVERHEAD


class Session:
    """State plus the queue of live deliveries not yet taken by the transport."""

    def __init__(self, peer: str | None = None) -> None:
        self.id = next(_ids)
        #: The client's address (an IP) as its transport saw it, for per-address policy
        #: such as login backoff; None when unknown (in-process clients).
        self.peer = peer
        self.state = State.ANONYMOUS
        self.username: str | None = None
        self.account_id: int | None = None  # the account's stable id (Rule 19) while logged in
        self.close_reason: CloseReason | None = None
        #: SHA-256 of the resume token this login was given or resumed with (issue 13), so
        #: logout revokes it and a password change replaces it; None before a login.
        self.resume_token_hash: bytes | None = None
        #: Its buckets for ACK ids and search time (core.pacing), made by the service at its
        #: first paced request; kept across logout and login, so logging in anew refills none.
        self.pacer: Pacer | None = None
        self._store: Store | None = None
        self._live: deque[SessionEvent] = deque()
        self._live_bytes = 0  # what _live holds, as _queued_bytes counts it
        self._wakeup = asyncio.Event()
        self._generation = 0  # bumps on each login/logout so an old iterator stops

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.state.value} {self.username!r}>"

    @property
    def active(self) -> bool:
        return self.state is State.ACTIVE

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def fire(self, event: Event) -> State:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise InvalidTransition(f"{self!r} cannot take {event.value!r}") from None
        return self.state

    # -- called by ChatService ---------------------------------------------------------------
    def _logged_in(self, username: str, store: Store, account_id: int) -> None:
        self.fire(Event.LOGGED_IN)
        self.username = username
        self.account_id = account_id
        self._store = store
        self._clear_live()
        self._generation += 1
        self._wakeup.set()

    def _logged_out(self) -> None:
        self.fire(Event.LOGGED_OUT)
        self.username = None
        self.account_id = None
        self.resume_token_hash = None
        self._clear_live()
        self._generation += 1
        self._wakeup.set()

    def _end(self, reason: CloseReason) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self.fire(Event.ENDED if reason is not CloseReason.AUTH_FAILED else Event.AUTH_FAILED)
        self._clear_live()
        self._wakeup.set()

    def _push(self, event: Delivery | Notice) -> bool:
        """Queue a live delivery or notice; False if the queue is full (the service then
        ends us)."""
        if type(event) is Delivery:  # (_queued_bytes written out: once per push)
            body = event.body
            size = _OVERHEAD + (len(body) if body.isascii() else len(body.encode()))
        else:
            size = _queued_bytes(event)
        live = self._live
        if len(live) >= _MAX_QUEUE or self._live_bytes + size > _MAX_QUEUE_BYTES:
            return False
        live.append(event)
        self._live_bytes += size
        self._wakeup.set()
        return True

    def _clear_live(self) -> None:
        self._live.clear()
        self._live_bytes = 0

    # -- called by transports ----------------------------------------------------------------
    def deliveries(self) -> AsyncIterator[Delivery]:
        """Everything for this login: the stored backlog, then live pushes, in id order.

        Ends when the session logs out or closes. One consumer per session. Notices are
        skipped (use :meth:`events` to carry them).
        """
        return cast(AsyncIterator[Delivery], self._stream(notices=False))

    def events(self) -> AsyncIterator[SessionEvent]:
        """The backlog of pending deliveries (oldest first), then live deliveries and
        notices in the order they were pushed. Ends when the session logs out or closes.
        One consumer per session (use either this or :meth:`deliveries`)."""
        return self._stream(notices=True)

    async def _stream(self, *, notices: bool) -> AsyncIterator[SessionEvent]:
        generation = self._generation
        if not self.active or self._store is None or self.account_id is None:
            return
        last_id = 0
        while self.active and self._generation == generation:
            page = await self._store.pending_after(self.account_id, last_id, limits.BACKLOG_PAGE)
            for delivery in page:
                if not self.active or self._generation != generation:
                    return  # logged out or ended while the page was being consumed
                last_id = delivery.message_id
                yield delivery
            if len(page) < limits.BACKLOG_PAGE:
                break
        while self.active and self._generation == generation:
            while self._live and self._generation == generation:
                event = self._live.popleft()
                self._live_bytes -= _queued_bytes(event)
                if isinstance(event, Delivery):
                    if event.message_id <= last_id:
                        continue  # already yielded from the backlog
                    last_id = event.message_id
                elif not notices:
                    continue
                yield event
            if not self.active or self._generation != generation:
                break
            self._wakeup.clear()
            await self._wakeup.wait()


def _queued_bytes(event: SessionEvent) -> int:
    """What a queued delivery or notice counts against MAX_SESSION_QUEUE_BYTES: a fixed cost
    per item, plus a message's body in UTF-8 (an ASCII body's length is its size, so only
    other text is encoded to count it) or 8 bytes per id of a MessagesDeleted."""
    if isinstance(event, Delivery):
        body = event.body
    elif isinstance(event, SentCopy):
        body = event.message.body
    elif isinstance(event, MessagesDeleted):
        return limits.QUEUE_ITEM_OVERHEAD + 8 * len(event.message_ids)
    else:
        return limits.QUEUE_ITEM_OVERHEAD
    return limits.QUEUE_ITEM_OVERHEAD + (len(body) if body.isascii() else len(body.encode()))


__all__ = ["TRANSITIONS", "Event", "InvalidTransition", "Session", "State"]
