"""Retrying what the chat server shed, so a person's click is not lost to a passing burst.

When the chat server runs behind, it refuses work it has no room for with
:class:`core.errors.Overloaded` (gRPC's load meter, the core's search shedding, a full
server): *nothing was done* and the same request may pass a moment later. A program can
decide what to do with that answer; a person who clicked "Sign up" should not have to. So the
web gateway retries a shed command a few times, waiting a little longer each time, and shows
the server's sentence only when the server stays busy through every try.

Bounds: ``WAITS`` gives at most 3 retries and 1.75 s of waiting in all (each wait jittered
down to half, so the retries of many pages that were shed together do not arrive together
again). Only :class:`Overloaded` is retried: every other refusal is an answer about the
request itself, and a retry would get the same one. The console client does not retry: its
person sees the sentence and decides.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from core.errors import Overloaded

T = TypeVar("T")

#: Seconds to wait before each retry of a shed command (before jitter).
WAITS: tuple[float, ...] = (0.25, 0.5, 1.0)


async def retry_shed(
    attempt: Callable[[], Awaitable[T]],
    *,
    waits: Sequence[float] = WAITS,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """``await attempt()``; while it raises :class:`Overloaded`, wait and call it again, at
    most ``len(waits)`` more times. The last refusal reaches the caller unchanged.

    ``attempt`` is called afresh each time, so it may open a new connection per try (a
    refused signup ends its chat session, Rule 4)."""
    for wait in waits:
        try:
            return await attempt()
        except Overloaded:
            await sleep(wait * random.uniform(0.5, 1.0))
    return await attempt()


__all__ = ["WAITS", "retry_shed"]
