"""run_eagerly and start_eagerly, the custom server's way to handle a request without a task per
message: they must behave exactly like awaiting the coroutine, whether or not it ever waits."""

from __future__ import annotations

import asyncio

import pytest

from transports.custom._eager import Suspended, run_eagerly, start_eagerly

pytestmark = pytest.mark.timeout(30)


async def test_a_coroutine_that_never_waits_returns_its_value_without_a_task() -> None:
    ran: list[str] = []

    async def inner() -> int:
        ran.append("inner")
        return 41

    async def outer() -> int:
        return await inner() + 1

    tasks_before = asyncio.all_tasks()
    assert run_eagerly(outer()) == 42
    assert ran == ["inner"]  # it ran before run_eagerly returned
    assert asyncio.all_tasks() == tasks_before


async def test_an_exception_before_any_wait_reaches_the_caller() -> None:
    async def failing() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        run_eagerly(failing())


async def test_a_coroutine_that_waits_continues_in_a_task() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def work() -> str:
        steps.append("before")
        value = await gate
        steps.append("after")
        await asyncio.sleep(0)  # a bare yield, too
        return value.upper()

    outcome = run_eagerly(work(), name="eager-test")
    assert isinstance(outcome, Suspended)
    assert steps == ["before"]  # ran up to its first wait, on our stack
    assert outcome.task.get_name() == "eager-test"
    gate.set_result("done")
    assert await outcome.task == "DONE"
    assert steps == ["before", "after"]


async def test_an_exception_after_a_wait_is_the_tasks() -> None:
    async def work() -> None:
        await asyncio.sleep(0)
        raise ValueError("late")

    outcome = run_eagerly(work())
    assert isinstance(outcome, Suspended)
    with pytest.raises(ValueError, match="late"):
        await outcome.task


async def test_an_executor_wait_works_like_a_plain_await() -> None:
    async def hashed() -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, sum, range(10))

    outcome = run_eagerly(hashed())
    assert isinstance(outcome, Suspended)
    assert await outcome.task == 45


async def test_cancelling_the_task_cancels_the_coroutine_and_what_it_waits_for() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned: list[bool] = []

    async def work() -> None:
        try:
            await gate
        finally:
            cleaned.append(True)

    outcome = run_eagerly(work())
    assert isinstance(outcome, Suspended)
    await asyncio.sleep(0)  # the task is waiting on the gate now
    outcome.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outcome.task
    assert cleaned == [True]
    assert gate.cancelled()  # as a task awaiting it directly would have done


async def test_a_coroutine_may_catch_a_cancellation_and_return() -> None:
    async def work() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "tidied up"
        return "slept"

    outcome = run_eagerly(work())
    assert isinstance(outcome, Suspended)
    await asyncio.sleep(0)
    outcome.task.cancel()
    assert await outcome.task == "tidied up"


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
