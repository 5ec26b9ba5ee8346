"""Run a coroutine eagerly: on the caller's stack until its first real suspension.

Why. The server answers most requests without ever waiting: ``ChatService.send`` on SQLite
does its work synchronously inside an ``async def``. Wrapping each request in a task would
cost a task object plus a trip around the event loop per message (DESIGN.md's "no
per-message task creation"). Python 3.12 offers ``asyncio.eager_task_factory`` for exactly
this; on 3.11 we write the few lines it needs ourselves.

How. ``start_eagerly(coro)`` steps the coroutine until it either returns (no task, no future:
``None``), raises (the exception propagates to our caller, as a plain call's would), or yields.
A coroutine yields only what an asyncio Task understands: a future it waits for (with
``_asyncio_future_blocking`` set by ``Future.__await__``) or ``None`` (``asyncio.sleep(0)``).
From that point on the rest of the coroutine is a :class:`Continuation`, a Future that resumes
the coroutine itself when the future it waits for is done, without a task (issue 10: on the
SQLite store every pipelined SEND waits for its group's commit; callgrind, the probe
bench/micro_sqlite_probe.py: a task per send cost ~7,600 instructions more than a
continuation; the custom driver's pipelined SENDs on SQLite now skip the continuation too,
transports/custom/_server.py's ``_StagedConnection``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

#: What ``next`` returns for a coroutine that finished (see ``start_eagerly``).
FINISHED = object()


def start_eagerly(
    coro: Coroutine[Any, Any, None], done: Callable[[Continuation], None] | None = None
) -> Continuation | None:
    """Run ``coro`` (a coroutine that returns None) on the caller's stack: None when it
    finished there, else the :class:`Continuation` finishing it. ``done``: called with the
    continuation as soon as it is done, on its stack (a done callback waits a loop turn).

    Cheaper on the path every request takes: it steps the coroutine with ``next`` on its
    ``__await__`` iterator, and a coroutine that returns None ends that iteration without
    the StopIteration that ``coro.send`` has to raise (and the caller to catch).
    """
    first = next(coro.__await__(), FINISHED)
    if first is FINISHED:
        return None
    return Continuation(coro, first, done)


class Continuation(asyncio.Future[None]):
    """The rest of a coroutine that waited, driven without a task (``start_eagerly``).

    A Task per waiting request costs the task, a loop turn to start it, and (as this module
    did it before) two wrapper frames around the coroutine at every step; on the SQLite
    store every pipelined SEND waits for its group's commit, so it paid all of that (issue
    10, measured with callgrind). This does what a Task does for a coroutine that yields
    futures, and no more: the future it waits for calls ``_wake`` when done, which resumes
    the coroutine (``Future.__await__`` then returns the future's result or raises its
    exception); a bare ``yield`` (``asyncio.sleep(0)``) resumes at the next loop turn. It is
    the coroutine's outcome as a Future: its result, its exception, or cancelled when the
    coroutine let a cancellation out. ``cancel`` cancels the future waited for, so the
    coroutine sees CancelledError there, as in a task; while the coroutine runs (it cancels
    itself), the next future it waits for is cancelled instead.

    A future that offers ``wake_directly`` (core/sqlite_writer.py's ``Write`` and the
    waiter awaiting a ``Commit`` makes) gets our
    ``_wake`` there instead of a done callback: its owner calls it when it completes it,
    without a loop turn per waiter (a group's commit wakes its sends in group order).

    No task is current while it runs (``asyncio.current_task()`` is None, as during the
    eager first step): code that needs one (``asyncio.timeout``, asyncpg) makes its own
    (core/postgres_base.py's ``in_task``).
    """

    __slots__ = ("_cancel_next", "_coro", "_done", "_waiting")

    def __init__(
        self,
        coro: Coroutine[Any, Any, None],
        first: Any,
        done: Callable[[Continuation], None] | None = None,
    ) -> None:
        super().__init__()
        self._coro = coro
        self._done = done
        self._waiting: asyncio.Future[Any] | None = None
        self._cancel_next = False
        self._wait(first)

    def cancel(self, msg: Any = None) -> bool:
        if self.done():
            return False
        waiting = self._waiting
        if waiting is not None and waiting.cancel(msg):
            # (the coroutine wakes with CancelledError; its outcome decides. A future that
            # wakes us directly does not once cancelled: its owner skips it)
            if getattr(waiting, "wake_directly", None) is not None:
                self.get_loop().call_soon(self._wake, waiting)
            return True
        self._cancel_next = True
        return True

    def _wait(self, yielded: Any) -> None:
        """Resume the coroutine once what it yielded is done."""
        if yielded is None:  # a bare yield: the next loop turn
            self.get_loop().call_soon(self._step)
            return
        if getattr(yielded, "_asyncio_future_blocking", None):
            yielded._asyncio_future_blocking = False
            self._waiting = yielded
            if getattr(yielded, "wake_directly", False) is None:
                yielded.wake_directly = self._wake
            else:
                yielded.add_done_callback(self._wake)
            if self._cancel_next:  # (it cancelled itself while it ran)
                self._cancel_next = False
                self.cancel()
            return
        error = RuntimeError(f"a request's coroutine yielded {yielded!r}, not a future")
        self.get_loop().call_soon(self._step, error)

    def _wake(self, future: asyncio.Future[Any]) -> None:
        self._waiting = None
        self._step()

    def _step(self, error: BaseException | None = None) -> None:
        if self._cancel_next and error is None:  # (cancelled while no future was waited for)
            self._cancel_next = False
            error = asyncio.CancelledError()
        try:
            yielded = self._coro.send(None) if error is None else self._coro.throw(error)
        except StopIteration:
            super().set_result(None)
        except asyncio.CancelledError:
            super().cancel()
        except (KeyboardInterrupt, SystemExit) as exc:
            super().set_exception(exc)
            raise
        except BaseException as exc:
            super().set_exception(exc)
        else:
            self._wait(yielded)
            return
        if self._done is not None:
            self._done(self)


__all__ = ["FINISHED", "Continuation", "start_eagerly"]
