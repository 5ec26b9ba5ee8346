"""Login throttling (Rule 3) that protects both ways: it limits guesses on an account however
many arrive at once, and never makes the account's owner wait behind someone else's guesses.

Theory of operation (docs/LIMITS.md, section "Login", gives the numbers to users)
  Rule 1. An attempt counts as a failure from the moment it starts. A success takes its own
     count back and clears the failures of its (name, address) pair; a failure, an error or a
     cancelled attempt (the client hung up) keeps it. So parallel guesses see each other.
  Rule 2. Backoff per (name, address). The first ``free_failures`` (3) failures from one
     address on one name cost nothing; after n >= 3 an attempt from that address waits until
     ``base * 2**(n - 3)`` seconds (0.25 s, doubling, at most ``cap`` = 8 s) have passed since
     that address's last attempt on the name. Only that address's own attempts wait, so a
     guesser slows itself down and nobody else.
  Rule 3. Never a queue. At most ``per_address_in_flight`` (2) attempts on one name from one
     address are under way at once, and an attempt that would have to wait longer than
     ``cap`` is refused; both refusals are immediate, with TooManyAttempts and a time to retry.
  Rule 4. Ceiling per name, from all addresses together: at most ``ceiling`` (20) attempts
     that did not succeed may start in any ``window`` (60 s). Over it, an attempt from an
     address that has had a failure on this name in the last ``clean_after`` (300 s) is
     refused at once, without a password check. An address with no recent failure there (the
     owner's, as a rule) is still checked at once: it is never refused or queued because of
     what other addresses did, and its one attempt makes it unclean if it fails.
  Rule 5. All of it is keyed on the name as typed, whether an account has it or not, so the
     throttle's answers and timing reveal nothing about which names exist.
  Rule 6. Password checks take turns (``core.passwords``) by ``priority``: first an address
     that has logged in to the name before (in this server's life) and has not failed on it
     since (the owner, as a rule), then clean addresses, then the rest. So guesses from many
     fresh addresses, each checked at once by Rule 4, queue behind the owner, not before.

IPv6 addresses are grouped by /64 (one subscriber's usual allocation), IPv4 addresses count
one by one; ``None`` (an in-process client) is one address. Memory is bounded: at most
MAX_TRACKED_NAMES names and as many (name, address) pairs are remembered, least recently
used forgotten first.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import ipaddress
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.errors import TooManyAttempts

#: Names (and, separately, (name, address) pairs) we remember; the least recently used is
#: forgotten first. Bounds memory against a client that tries a million different names.
MAX_TRACKED_NAMES = 100_000

#: Start times kept per name, in ceilings: enough to know the ceiling is reached.
_WINDOW_SLACK = 2


@dataclass(slots=True)
class _Pair:
    """One address's record on one name."""

    failures: int = 0  # failed attempts since the last success (Rule 1)
    in_flight: int = 0  # attempts started and not finished (they count as failures too)
    last: float = float("-inf")  # start of the latest attempt, or end of the latest failure
    last_failure: float = float("-inf")  # when a failure (or a start) was last counted

    @property
    def count(self) -> int:
        return self.failures + self.in_flight


def address_key(peer: str | None) -> str | None:
    """The unit an address is throttled by: IPv4 as is, IPv6 by its /64 prefix."""
    if peer is None:
        return None
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return peer
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class LoginThrottle:
    """The login policy's state; :meth:`attempt` wraps one login. Every number is a parameter
    so tests can shrink the waits; the defaults are the server's (docs/LIMITS.md)."""

    def __init__(
        self,
        base: float = 0.25,
        cap: float = 8.0,
        free_failures: int = 3,
        *,
        per_address_in_flight: int = 2,
        ceiling: int = 20,
        window: float = 60.0,
        clean_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base, self.cap, self.free_failures = base, cap, free_failures
        self.per_address_in_flight = per_address_in_flight
        self.ceiling, self.window, self.clean_after = ceiling, window, clean_after
        self._clock = clock
        self._pairs: OrderedDict[tuple[str, str | None], _Pair] = OrderedDict()
        # name -> start times (ascending) of its attempts that have not succeeded, for Rule 4
        self._names: OrderedDict[str, list[float]] = OrderedDict()
        # (name, address) pairs that have logged in, least recently first (Rule 6)
        self._trusted: OrderedDict[tuple[str, str | None], None] = OrderedDict()

    # -- the schedule ------------------------------------------------------------------------
    def backoff(self, failures: int) -> float:
        """Seconds between attempts from one address once it has ``failures`` (Rule 2)."""
        if failures < self.free_failures:
            return 0.0
        return min(self.cap, self.base * 2 ** (failures - self.free_failures))

    def delay(self, username: str, peer: str | None = None) -> float:
        """The backoff the next attempt on ``username`` from ``peer`` is subject to."""
        pair = self._pairs.get((username, address_key(peer)))
        return self.backoff(pair.count) if pair else 0.0

    def priority(self, username: str, peer: str | None = None) -> int:
        """The turn of a password check on ``username`` from ``peer`` (Rule 6): 0 for an
        address that logged in to it before and has not failed since, 1 for one with no
        failure on it, 2 for the others."""
        key = (username, address_key(peer))
        pair = self._pairs.get(key)
        if pair is not None and pair.failures:
            return 2
        return 0 if key in self._trusted else 1

    # -- one attempt -------------------------------------------------------------------------
    @asynccontextmanager
    async def attempt(self, username: str, peer: str | None = None) -> AsyncIterator[None]:
        """Wrap one login attempt; the body raises to count as a failure.

        Raises TooManyAttempts before the body runs when the attempt is refused (Rules 3-4);
        may first sleep out this address's own backoff (Rule 2, at most ``cap`` seconds).
        """
        key = (username, address_key(peer))
        now = self._clock()
        pair = self._pairs.get(key)
        self._check_ceiling(username, pair, now)
        if pair is not None and pair.in_flight >= self.per_address_in_flight:
            raise TooManyAttempts(retry_after=1.0)
        start = now
        if pair is not None:
            start = max(now, pair.last + self.backoff(pair.count))
            if start - now > self.cap:
                raise TooManyAttempts(retry_after=start - now)
        # Rule 1: from here on this attempt is a failure unless it proves otherwise.
        pair = self._pair(key)
        pair.in_flight += 1
        pair.last = max(pair.last, start)
        pair.last_failure = now
        window = self._window(username)
        window.append(now)
        succeeded = False
        try:
            if start > now:
                await asyncio.sleep(start - now)
            yield
            succeeded = True
        finally:
            pair.in_flight -= 1
            if succeeded:
                pair.failures = 0
                self._trusted[key] = None
                self._trusted.move_to_end(key)
                while len(self._trusted) > MAX_TRACKED_NAMES:
                    self._trusted.popitem(last=False)
                if pair.in_flight == 0 and self._pairs.get(key) is pair:
                    del self._pairs[key]
                with contextlib.suppress(ValueError):  # (unless it aged out already)
                    window.remove(now)
            else:
                pair.failures += 1
                end = self._clock()
                pair.last = max(pair.last, end)
                pair.last_failure = end

    def _failed(self, username: str, peer: str | None = None) -> None:
        """Record one failure as if an attempt had just failed (for tests and docs)."""
        now = self._clock()
        pair = self._pair((username, address_key(peer)))
        pair.failures += 1
        pair.last = pair.last_failure = now
        self._window(username).append(now)

    # -- internals ---------------------------------------------------------------------------
    def _check_ceiling(self, username: str, pair: _Pair | None, now: float) -> None:
        """Rule 4: over the ceiling, refuse at once unless the address is clean."""
        starts = self._names.get(username)
        if starts is None:
            return
        del starts[: bisect.bisect_right(starts, now - self.window)]
        del starts[: max(0, len(starts) - self.ceiling * _WINDOW_SLACK)]  # more change nothing
        if len(starts) < self.ceiling:
            return
        clean = pair is None or (
            pair.in_flight == 0 and pair.last_failure <= now - self.clean_after
        )
        if not clean:
            # The window falls below the ceiling when its ceiling-th newest start ages out.
            frees_at = starts[len(starts) - self.ceiling] + self.window
            raise TooManyAttempts(retry_after=frees_at - now)

    def _pair(self, key: tuple[str, str | None]) -> _Pair:
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = _Pair()
            while len(self._pairs) > MAX_TRACKED_NAMES:
                self._pairs.popitem(last=False)
        else:
            self._pairs.move_to_end(key)
        return pair

    def _window(self, username: str) -> list[float]:
        starts = self._names.get(username)
        if starts is None:
            starts = self._names[username] = []
            while len(self._names) > MAX_TRACKED_NAMES:
                self._names.popitem(last=False)
        else:
            self._names.move_to_end(username)
        return starts


__all__ = ["MAX_TRACKED_NAMES", "LoginThrottle", "address_key"]
