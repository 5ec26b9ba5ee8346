"""Issue 14, the owner's login under guessing: one password-check worker is kept for checks
of priority 0 (an address that logged in to the name before and has not failed since), so
the owner's check never waits for guesses already being checked. In the hostile scene 20
guessers from fresh addresses kept both workers busy, and the owner's login took 1-7 s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time

import pytest

from bench.hostile import owner_checks
from core.passwords import GUESS_NICENESS, HASH_WORKERS, SLOW_OWNER_CHECK, HashCost, Passwords

pytestmark = pytest.mark.timeout(60)
WAIT = 10.0


class SlowGuesses:
    """A hasher whose checks of guesses block until ``release``; the owner's pass at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def verify(self, stored_hash: str, password: str) -> bool:
        if password.startswith("guess"):
            self.started += 1
            self.release.wait(WAIT)
        return True

    def hash(self, password: str) -> str:
        return "hash"


async def test_the_owners_check_never_waits_for_guesses_being_checked() -> None:
    passwords = Passwords(HashCost.LOW)
    hasher = SlowGuesses()
    passwords._hasher = hasher  # type: ignore[assignment]
    guesses = [
        asyncio.ensure_future(passwords.verify("stored", f"guess-{i}", priority=1))
        for i in range(HASH_WORKERS + 2)
    ]
    try:
        async with asyncio.timeout(WAIT):
            while not hasher.started:  # noqa: ASYNC110 - a counter on another thread
                await asyncio.sleep(0.01)
        # guesses are being checked (at most all workers but one) and more wait
        assert await asyncio.wait_for(passwords.verify("stored", "pw-secret-1", 0), WAIT)
        assert not any(guess.done() for guess in guesses)
        assert hasher.started == HASH_WORKERS - 1  # the guesses got one worker, not two
    finally:
        hasher.release.set()
        assert all(await asyncio.gather(*guesses))  # and every guess was checked in the end


async def test_a_slow_check_of_the_owner_is_logged_with_where_it_waited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The hostile scene reads these lines (bench.hostile.owner_checks): whether a slow login
    # of the owner waited for a worker or for its hash. Guesses hold the one worker they may
    # take; the owner's check itself takes longer than SLOW_OWNER_CHECK. Before: no line.
    passwords = Passwords(HashCost.LOW)
    hasher = SlowGuesses()
    passwords._hasher = hasher  # type: ignore[assignment]
    guess = asyncio.ensure_future(passwords.verify("stored", "guess-1", priority=1))

    class SlowOwner:
        def verify(self, stored_hash: str, password: str) -> bool:
            if password.startswith("guess"):
                return hasher.verify(stored_hash, password)
            time.sleep(SLOW_OWNER_CHECK * 1.5)
            return True

    passwords._hasher = SlowOwner()  # type: ignore[assignment]
    try:
        with caplog.at_level(logging.INFO, logger="core.passwords"):
            assert await asyncio.wait_for(passwords.verify("stored", "pw-secret-1", 0), WAIT)
            hasher.release.set()
            await asyncio.wait_for(guess, WAIT)
            assert await asyncio.wait_for(passwords.verify("stored", "pw-secret-2", 1), WAIT)
        lines = [r.getMessage() for r in caplog.records if r.name == "core.passwords"]
        assert len(lines) == 1, lines  # (the owner's; the other check is not the owner's)
        checks = owner_checks([f"INFO core.passwords: {lines[0]}"])
        assert len(checks) == 1 and checks[0][2] >= SLOW_OWNER_CHECK * 1000
    finally:
        hasher.release.set()
        await asyncio.wait_for(guess, WAIT)


class Niceness:
    """A hasher that records the niceness of the thread each check runs on, by password."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def verify(self, stored_hash: str, password: str) -> bool:
        self.seen[password] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return True

    def hash(self, password: str) -> str:
        self.seen[password] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return "hash"


@pytest.mark.skipif(sys.platform != "linux", reason="a niceness per thread is Linux's")
async def test_guesses_are_hashed_on_threads_that_yield_the_cpu_to_the_loop() -> None:
    # The hostile scene's guessers from fresh addresses kept argon2 on both vCPUs (~44 s of
    # the server's CPU) and the event loop waited for a CPU behind them. Checks of priority
    # > 0 (and signups) now run on threads of the lowest priority; the owner's check keeps
    # the process's. An unknown name and a wrong password from the same kind of address run
    # on the same threads (Rule 3: the same time). Before: every check at the process's.
    own = os.getpriority(os.PRIO_PROCESS, 0)
    passwords = Passwords(HashCost.LOW)
    hasher = Niceness()
    passwords._hasher = hasher  # type: ignore[assignment]
    assert await asyncio.wait_for(passwords.verify("stored", "owner", 0), WAIT)
    assert await asyncio.wait_for(passwords.verify("stored", "wrong-password", 1), WAIT)
    assert not await asyncio.wait_for(passwords.verify(None, "unknown-name", 1), WAIT)
    assert await asyncio.wait_for(passwords.verify("stored", "failed-before", 2), WAIT)
    await asyncio.wait_for(passwords.hash("signup"), WAIT)
    low = max(own, GUESS_NICENESS)
    assert hasher.seen == {
        "owner": own,
        "wrong-password": low,
        "unknown-name": low,
        "failed-before": low,
        "signup": low,
    }
    assert os.getpriority(os.PRIO_PROCESS, 0) == own  # (the loop's thread is untouched)
