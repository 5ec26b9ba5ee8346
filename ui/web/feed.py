"""The live feed of one signed-in browser session: what its open pages are told, in order.

History lives on the chat server (Rules 20-25): a page asks the server for it when it loads.
Between loads, what changes reaches the page through this feed, which the gateway fills from
``client.events()`` (and from this session's own sends, which the server does not echo to the
session that sent them):

* ``message``: a :class:`core.types.Delivery` (incoming, a "sent by you" copy from another
  device, or a message one of this browser's tabs sent), with ``mine`` set when we sent it;
* ``deleted``: message ids gone from the history (Rule 23), for every page to remove;
* the sidebar snapshot: the first page of conversations as the server counts them (unread
  counts, last message); a newer snapshot replaces the older one, it is not queued;
* the connection status: while the gateway restores its connection to the chat server
  ("reconnecting...", then "reconnected"), a line for every page to show; the latest
  replaces the older one, like the snapshot;
* the end: why the session ended.

Threads. The gateway's asyncio loop writes (``end()`` may come from any thread). Open pages'
event streams are coroutines on that same loop (:mod:`ui.web.events`) and wait with
:meth:`Feed.wait_async`; :meth:`Feed.wait` blocks a thread instead (tests, tools). One
``threading.Condition`` guards everything; an async waiter is a future woken through its loop's
``call_soon_threadsafe``, so a writer on any thread wakes it safely. Events carry an increasing
``seq``; a page rendered at ``last_seq`` streams everything after it. At most ``max_events``
are kept: a stream that fell further behind is told to reload (``gap``), which is correct
because a reload reads the server's history.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from core.types import ConversationPage, Delivery

#: Events kept for streams that reconnect (an EventSource retries after 3 s with the last id).
MAX_EVENTS = 500


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    kind: str  # "message" or "deleted"
    message: Delivery | None = None
    mine: bool = False
    deleted: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Changes:
    """What a stream sends after waking."""

    events: tuple[Event, ...]
    snapshot: ConversationPage | None  # None: unchanged since the stream's last
    snapshot_version: int
    ended: str | None
    gap: bool  # events the stream has not seen were dropped: the page must reload
    #: (state, sentence) of the connection, when it changed since the stream's last
    #: (``after_status``); None: unchanged, or not asked for.
    status: tuple[str, str] | None = None
    status_version: int = 0


class Feed:
    """Live events of one browser session (see the module docstring)."""

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self.max_events = max_events
        self._cond = threading.Condition()
        self._events: deque[Event] = deque()
        self._seq = 0
        self._snapshot: ConversationPage | None = None
        self._snapshot_version = 0
        self.ended: str | None = None
        self._status: tuple[str, str] | None = None
        self._status_version = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # -- writers (the gateway's loop thread; end() from any thread) -------------------------
    def message(self, delivery: Delivery, *, mine: bool) -> None:
        with self._cond:
            self._append(Event(self._seq + 1, "message", delivery, mine))

    def deleted(self, message_ids: tuple[int, ...]) -> None:
        with self._cond:
            self._append(Event(self._seq + 1, "deleted", deleted=message_ids))

    def set_snapshot(self, page: ConversationPage) -> None:
        with self._cond:
            self._snapshot = page
            self._snapshot_version += 1
            self._notify()

    def set_status(self, state: str, text: str) -> None:
        """The connection's state ("reconnecting", "resumed", "gave-up") and a sentence."""
        with self._cond:
            self._status = (state, text)
            self._status_version += 1
            self._notify()

    def end(self, reason: str) -> None:
        with self._cond:
            if self.ended is None:
                self.ended = reason
                self._notify()

    def wake(self) -> None:
        """Wake every waiter without a change (so it can check its ``stop``)."""
        with self._cond:
            self._notify()

    # -- readers ---------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        with self._cond:
            return self._seq

    @property
    def snapshot(self) -> ConversationPage | None:
        with self._cond:
            return self._snapshot

    @property
    def status(self) -> tuple[str, str] | None:
        with self._cond:
            return self._status

    def wait(
        self,
        after_seq: int,
        after_snapshot: int,
        timeout: float,
        stop: Callable[[], bool] = lambda: False,
        after_status: int | None = None,
    ) -> Changes | None:
        """Block until there is something after ``after_seq`` / ``after_snapshot`` (and
        ``after_status``, if given), or the end; None on timeout or when ``stop()`` turns
        true (checked at every wake)."""
        with self._cond:
            if (
                not self._cond.wait_for(
                    lambda: self._ready(after_seq, after_snapshot, after_status) or stop(),
                    timeout,
                )
                or stop()
            ):
                return None
            return self._collect(after_seq, after_snapshot, after_status)

    async def wait_async(
        self,
        after_seq: int,
        after_snapshot: int,
        timeout: float,
        stop: Callable[[], bool] = lambda: False,
        after_status: int | None = None,
    ) -> Changes | None:
        """:meth:`wait` for a coroutine: the same answer, without blocking the loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._cond:
                if stop():
                    return None
                if self._ready(after_seq, after_snapshot, after_status):
                    return self._collect(after_seq, after_snapshot, after_status)
                waiter = (loop, loop.create_future())
                self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter[1]
            except TimeoutError:
                return None
            finally:  # timed out or cancelled (the page went away): forget the waiter
                with self._cond:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    # -- internals -------------------------------------------------------------------------
    def _ready(self, after_seq: int, after_snapshot: int, after_status: int | None) -> bool:
        return (
            self._seq > after_seq
            or self._snapshot_version > after_snapshot
            or self.ended is not None
            or (after_status is not None and self._status_version > after_status)
        )

    def _collect(self, after_seq: int, after_snapshot: int, after_status: int | None) -> Changes:
        events = tuple(e for e in self._events if e.seq > after_seq)
        oldest = self._events[0].seq if self._events else self._seq + 1
        gap = after_seq < self._seq and oldest > after_seq + 1
        snapshot = self._snapshot if self._snapshot_version > after_snapshot else None
        fresh = after_status is not None and self._status_version > after_status
        status = self._status if fresh else None
        return Changes(
            events, snapshot, self._snapshot_version, self.ended, gap, status, self._status_version
        )

    def _notify(self) -> None:
        """Wake every waiter, thread or coroutine (the caller holds the condition)."""
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def _append(self, event: Event) -> None:
        self._seq = event.seq
        self._events.append(event)
        while len(self._events) > self.max_events:
            self._events.popleft()
        self._notify()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["MAX_EVENTS", "Changes", "Event", "Feed"]
