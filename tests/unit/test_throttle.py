"""The login throttle's rules (core.throttle), each on a fake clock where time matters."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import TooManyAttempts
from core.throttle import LoginThrottle, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def fail(throttle: LoginThrottle, name: str, peer: str | None) -> None:
    with pytest.raises(ValueError):
        async with throttle.attempt(name, peer):
            raise ValueError("wrong password")


def test_ipv6_is_grouped_by_its_64_prefix_and_ipv4_by_address() -> None:
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::1")
    assert address_key("2001:db8:1:2::5") != address_key("2001:db8:1:3::5")
    assert address_key("10.0.0.1") != address_key("10.0.0.2")
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key(None) is None


def test_the_backoff_schedule_is_per_address() -> None:
    throttle = LoginThrottle()
    delays = []
    for _ in range(10):
        throttle._failed("bob", "10.0.0.1")
        delays.append(throttle.delay("bob", "10.0.0.1"))
    assert delays == [0, 0, 0.25, 0.5, 1, 2, 4, 8, 8, 8]
    assert throttle.delay("bob", "10.0.0.2") == 0  # another address is not slowed


async def test_an_attempt_counts_when_it_starts_so_parallel_guesses_see_each_other() -> None:
    throttle = LoginThrottle()
    gate = asyncio.Event()
    checked = 0

    async def guess() -> None:
        nonlocal checked
        async with throttle.attempt("carol", "10.0.0.9"):
            checked += 1
            await gate.wait()
            raise ValueError("wrong password")

    tasks = [asyncio.create_task(guess()) for _ in range(50)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    refused = [r for r in results if isinstance(r, TooManyAttempts)]
    assert checked == 2 and len(refused) == 48  # per_address_in_flight = 2
    assert "try again in 1 s" in str(refused[0])
    assert throttle.delay("carol", "10.0.0.9") == 0  # 2 failures: still free


async def test_over_the_ceiling_failing_addresses_are_refused_but_a_clean_one_is_checked() -> None:
    clock = Clock()
    throttle = LoginThrottle(ceiling=5, window=60.0, clock=clock)
    for i in range(5):  # five addresses, one failure each: the ceiling is reached
        await fail(throttle, "dave", f"10.0.1.{i}")
    with pytest.raises(TooManyAttempts) as refused:
        async with throttle.attempt("dave", "10.0.1.0"):
            pass
    assert refused.value.retry_after == 60
    async with throttle.attempt("dave", "10.0.2.1"):  # the owner, from a clean address
        pass
    clock.now += 61  # the window has moved on
    async with throttle.attempt("dave", "10.0.1.0"):
        pass


async def test_a_success_clears_the_address_and_waits_are_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(base=0.25, cap=2.0, clock=clock)
    for _ in range(6):
        await fail(throttle, "erin", "10.0.3.1")
        clock.now += 10  # skip the waits in this unit test
    assert throttle.delay("erin", "10.0.3.1") == 2.0
    async with throttle.attempt("erin", "10.0.3.1"):
        pass
    assert throttle.delay("erin", "10.0.3.1") == 0.0


async def test_an_attempt_that_would_wait_beyond_the_cap_is_refused_at_once() -> None:
    throttle = LoginThrottle(base=1.0, cap=1.0, free_failures=1)
    await fail(throttle, "gail", None)
    slow = asyncio.create_task(fail(throttle, "gail", None))  # waits out 1 s of backoff
    await asyncio.sleep(0)
    with pytest.raises(TooManyAttempts):  # would start 1 s after that one: 2 s > the cap
        async with throttle.attempt("gail", None):
            pass
    slow.cancel()  # a guesser that hangs up still pays: the attempt counted when it started
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert throttle.delay("gail", None) == 1.0
