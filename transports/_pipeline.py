"""SendPipeline: the sends of one connection in flight together (issue 10), the bookkeeping the
server drivers share (the websocket server's ``_handle``, the custom server's ``_pipeline``;
the custom server's staged sends keep their own queue and take only the bounds from it).

Why. On the SQLite store a send waits for the group commit that holds it
(core/sqlite_writer.py). A connection served one request at a time put one send of its own in
each group; letting a send that waits be followed at once by the next send of the same
connection lets all of them share one transaction. The driver keeps the order: it starts the
store calls in request order (so the store's message ids keep it), makes each reply wait for
the send before it (``last`` when it started), and serves any other request only once the sends
before it are ``answered``.

What this holds. The sends in flight (each the :class:`Continuation` finishing it) with the
bytes of their requests, the last of them, and the bounds: ``sends_in_flight`` and
``send_bytes_in_flight`` of ServerLimits, and the server-wide inbound budget (``Guard``) that
those bytes are also counted against. The first send in flight is not counted (it pins what one
request at a time always did). The driver starts each send itself, on its own stack (the path
of every request: a call less), and hands over only a send that waits (``add``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from transports._eager import Continuation
from transports._guard import Guard


class SendPipeline:
    """One connection's sends waiting for their commit. ``failed`` is called with the
    exception of a send whose coroutine raised (a bug of the driver's: it catches the rest)."""

    __slots__ = ("_failed", "_guard", "_limits", "bytes", "last", "sends")

    def __init__(self, guard: Guard, failed: Callable[[BaseException], None]) -> None:
        #: The sends in flight, each with the bytes it holds of the budgets (0: the first).
        self.sends: dict[Continuation, int] = {}
        self.bytes = 0
        #: The last send started that is still in flight: the next one's reply waits for it.
        self.last: Continuation | None = None
        self._guard = guard
        self._limits = guard.limits
        self._failed = failed

    def admits(self, size: int, in_flight: int = -1) -> bool:
        """Room beside the sends in flight for one more of ``size`` bytes (then taken from
        the inbound budget: ``add`` it, or give it back when it did not wait). False: it
        waits until they are answered. ``in_flight``: how many there are, when the driver
        keeps them itself (the custom server's staged sends; it counts their ``bytes`` here)."""
        limits = self._limits
        return (
            (in_flight if in_flight >= 0 else len(self.sends)) < limits.sends_in_flight
            and self.bytes + size <= limits.send_bytes_in_flight
            and self._guard.reserve_inbound(size)
        )

    def add(self, coro: Coroutine[Any, Any, None], first: Any, size: int) -> None:
        """A send started with ``next(coro.__await__())`` that waits (``first``: what it
        yielded): in flight until its coroutine ends."""
        task = Continuation(coro, first, self._done)
        self.sends[task] = size
        self.bytes += size
        self.last = task

    def _done(self, task: Continuation) -> None:
        size = self.sends.pop(task, 0)
        if size:
            self.bytes -= size
            self._guard.give_back_inbound(size)
        if task is self.last:
            self.last = None
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                self._failed(error)

    async def answered(self) -> None:
        """Wait until every send in flight is answered (the last one's reply goes after every
        other's)."""
        while self.last is not None:
            await asyncio.wait((self.last,))


__all__ = ["SendPipeline"]
