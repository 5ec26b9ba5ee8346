"""start_eagerly, the custom server's way to handle a request without a task per message: it
must behave exactly like awaiting the coroutine, whether or not it ever waits (the Continuation
that finishes a coroutine that waited: tests/unit/test_eager_continuation.py)."""

from __future__ import annotations

import asyncio

import pytest

from transports._eager import start_eagerly

pytestmark = pytest.mark.timeout(30)


async def test_start_eagerly_runs_a_coroutine_that_never_waits_without_a_task() -> None:
    ran: list[str] = []

    async def work() -> None:
        ran.append("work")

    tasks_before = asyncio.all_tasks()
    assert start_eagerly(work()) is None
    assert ran == ["work"] and asyncio.all_tasks() == tasks_before


async def test_start_eagerly_hands_a_coroutine_that_waits_to_a_continuation() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ran: list[str] = []

    async def work() -> None:
        ran.append("before")
        await gate
        ran.append("after")

    tasks_before = asyncio.all_tasks()
    rest = start_eagerly(work())
    assert rest is not None and ran == ["before"]
    assert asyncio.all_tasks() == tasks_before  # (no task: a Continuation, a Future)
    gate.set_result(None)
    await rest
    assert ran == ["before", "after"]


async def test_start_eagerly_raises_what_the_coroutine_raises_before_waiting() -> None:
    async def failing() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        start_eagerly(failing())
