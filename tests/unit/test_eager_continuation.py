"""start_eagerly's Continuation: the rest of a request that waited, driven without a task
(issue 10: a pipelined SEND on the SQLite store waits for its group's commit). It must behave
as a task running the coroutine would: results, exceptions, cancellation, bare yields."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from transports._eager import Continuation, start_eagerly

pytestmark = pytest.mark.timeout(30)


def _started(coro: Any) -> Continuation:
    rest = start_eagerly(coro)
    assert isinstance(rest, Continuation)
    return rest


async def test_the_rest_runs_when_the_future_is_done_with_no_task() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[str] = loop.create_future()
    seen: list[object] = []

    async def work() -> None:
        seen.append(await gate)
        seen.append(asyncio.current_task())  # (none: no task was made)
        await asyncio.sleep(0)  # a bare yield
        seen.append("end")

    tasks_before = asyncio.all_tasks()
    rest = _started(work())
    assert asyncio.all_tasks() == tasks_before and not rest.done()
    gate.set_result("value")
    await asyncio.wait_for(asyncio.shield(rest), 10)
    assert seen == ["value", None, "end"]
    assert rest.result() is None


async def test_an_exception_of_the_rest_is_the_continuations() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        await gate
        raise ValueError("late")

    rest = _started(work())
    gate.set_exception(KeyError("raised into the coroutine"))
    with pytest.raises(KeyError):
        await rest

    rest = _started(work_after(asyncio.sleep(0)))
    with pytest.raises(ValueError, match="late"):
        await rest


async def work_after(wait: Any) -> None:
    await wait
    raise ValueError("late")


async def test_cancelling_cancels_what_it_waits_for_and_ends_cancelled() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    rest = _started(work_after(gate))
    assert rest.cancel() and gate.cancelled()  # (as a task awaiting the gate would)
    with pytest.raises(asyncio.CancelledError):
        await rest  # (the coroutine saw CancelledError at its wait, and let it out)
    assert rest.cancelled() and not rest.cancel()  # (done: a second cancel does nothing)


async def test_a_coroutine_may_catch_the_cancellation_and_return() -> None:
    async def work() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return

    rest = _started(work())
    rest.cancel()
    await rest
    assert not rest.cancelled()


async def test_cancelled_at_a_bare_yield_the_coroutine_sees_the_cancellation() -> None:
    seen: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0)
        seen.append("not cancelled")

    rest = _started(work())
    rest.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rest
    assert seen == []


async def test_cancelled_while_it_runs_the_next_wait_is_cancelled() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    holder: list[Continuation] = []
    seen: list[str] = []

    async def work() -> None:
        await gate
        holder[0].cancel()  # (the connection closing from inside its own request)
        seen.append("ran on")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled at the next wait")
            raise

    holder.append(_started(work()))
    gate.set_result(None)
    with pytest.raises(asyncio.CancelledError):
        await holder[0]
    assert seen == ["ran on", "cancelled at the next wait"]


async def test_wait_and_gather_take_it_as_any_future() -> None:
    loop = asyncio.get_running_loop()
    gates = [loop.create_future() for _ in range(3)]

    async def work(gate: asyncio.Future[None]) -> None:
        await gate

    rests = [_started(work(gate)) for gate in gates]
    for gate in gates:
        gate.set_result(None)
    done, pending = await asyncio.wait(rests, timeout=10)
    assert len(done) == 3 and not pending
    assert await asyncio.gather(*rests) == [None, None, None]


async def test_a_yield_that_is_not_a_future_fails_the_coroutine() -> None:
    class Odd:
        def __await__(self) -> Any:
            yield "not a future"

    async def work() -> None:
        await Odd()

    rest = _started(work())
    with pytest.raises(RuntimeError, match="not a future"):
        await rest
