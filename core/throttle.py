"""Per-account login backoff (Rule 3): repeated failures for one name slow down, with a cap.

The first ``free_failures`` wrong passwords cost nothing extra. After that every attempt on
that name (right or wrong, from any connection) waits until ``base * 2**(n - free)`` seconds,
capped at ``cap``, have passed since the last failure, and attempts on the name run one at a
time, so parallel connections cannot guess in parallel. A success clears the record.
Unknown names are throttled the same way, so the delay reveals nothing about existence.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

#: Names with recent failures we remember; the oldest is forgotten first. Bounds memory
#: against a client that tries a million different names.
MAX_TRACKED_NAMES = 100_000


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LoginThrottle:
    def __init__(self, base: float = 0.25, cap: float = 8.0, free_failures: int = 3) -> None:
        self.base, self.cap, self.free_failures = base, cap, free_failures
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def delay(self, username: str) -> float:
        """Seconds the next attempt on ``username`` waits after the last failure."""
        record = self._records.get(username)
        if record is None or record.failures < self.free_failures:
            return 0.0
        return min(self.cap, self.base * 2 ** (record.failures - self.free_failures))

    @asynccontextmanager
    async def attempt(self, username: str) -> AsyncIterator[None]:
        """Wrap one login attempt; the body raises to count as a failure."""
        record = self._records.get(username)
        if record is None or record.failures < self.free_failures:
            try:
                yield
            except BaseException:
                self._failed(username)
                raise
            else:
                self._records.pop(username, None)
            return
        async with record.lock:
            wait = record.last_failure + self.delay(username) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                yield
            except BaseException:
                self._failed(username)
                raise
            else:
                self._records.pop(username, None)

    def _failed(self, username: str) -> None:
        record = self._records.get(username)
        if record is None:
            record = self._records[username] = _Record()
            while len(self._records) > MAX_TRACKED_NAMES:
                self._records.popitem(last=False)
        self._records.move_to_end(username)
        record.failures += 1
        record.last_failure = time.monotonic()
