"""Issue 14, the owner's login under guessing: one password-check worker is kept for checks
of priority 0 (an address that logged in to the name before and has not failed since), so
the owner's check never waits for guesses already being checked. In the hostile scene 20
guessers from fresh addresses kept both workers busy, and the owner's login took 1-7 s.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from core.passwords import HASH_WORKERS, HashCost, Passwords

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
