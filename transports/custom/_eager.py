"""Run a coroutine eagerly: on the caller's stack until its first real suspension.

Why. The server answers most requests without ever waiting: ``ChatService.send`` on SQLite
does its work synchronously inside an ``async def``. Wrapping each request in a task would
cost a task object plus a trip around the event loop per message (DESIGN.md's "no
per-message task creation"). Python 3.12 offers ``asyncio.eager_task_factory`` for exactly
this; on 3.11 we write the few lines it needs ourselves.

How. ``run_eagerly(coro)`` calls ``coro.send(None)``, which runs the coroutine until it either
returns (``StopIteration``: its value is our result, no task involved) or raises (the exception
propagates to our caller, as a plain call's would), or yields. A coroutine yields only what an
asyncio Task understands: a future it waits for (with ``_asyncio_future_blocking`` set by
``Future.__await__``) or ``None`` (``asyncio.sleep(0)``). From that point on it needs a task, so
we create one around ``_Continue``, an awaitable that first yields that same object to the new
task and then forwards every later ``send``/``throw`` to the coroutine: the task cannot tell it
from the coroutine itself, so waking up, cancellation and the result behave exactly as if the
coroutine had been a task from the start. The caller gets the task, wrapped in ``Suspended``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Suspended(Generic[T]):
    """What ``run_eagerly`` returns when the coroutine had to wait: the task finishing it."""

    __slots__ = ("task",)

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task

    def __repr__(self) -> str:
        return f"<Suspended {self.task!r}>"


def run_eagerly(coro: Coroutine[Any, Any, T], *, name: str | None = None) -> T | Suspended[T]:
    """Run ``coro`` until it returns (its value), raises (propagated) or waits (``Suspended``).

    Must be called from code running on the event loop (the task, if needed, is created on
    the running loop). ``coro``'s result is never itself a ``Suspended``, so the caller can
    tell the cases apart with one ``isinstance``.
    """
    try:
        first = coro.send(None)
    except StopIteration as done:
        return done.value
    # (Any other exception propagates: the coroutine has finished, with it.)
    return Suspended(asyncio.get_running_loop().create_task(_finish(coro, first), name=name))


#: What ``next`` returns for a coroutine that finished (see ``start_eagerly``).
_DONE = object()


def start_eagerly(
    coro: Coroutine[Any, Any, None], *, name: str | None = None
) -> asyncio.Task[None] | None:
    """``run_eagerly`` for a coroutine that returns None: None when it finished, else the
    task finishing it.

    Cheaper on the path every request takes: it steps the coroutine with ``next`` on its
    ``__await__`` iterator, and a coroutine that returns None ends that iteration without
    the StopIteration that ``coro.send`` has to raise (and the caller to catch).
    """
    first = next(coro.__await__(), _DONE)
    if first is _DONE:
        return None
    return asyncio.get_running_loop().create_task(_finish(coro, first), name=name)


async def _finish(coro: Coroutine[Any, Any, T], first: Any) -> T:
    return await _Continue(coro, first)


class _Continue(Generic[T]):
    """An awaitable that is ``coro`` resumed at its first suspension, which yielded ``first``.

    ``__await__`` is hand-written ``yield from``: it yields what the coroutine yields and
    passes what the task sends or throws (a wake-up, a cancellation) back into it.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, T], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, T]:
        coro, yielded = self._coro, self._first
        self._first = None
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # thrown in by the task: forward it
                try:
                    yielded = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as done:
                    return done.value


__all__ = ["Suspended", "run_eagerly", "start_eagerly"]
