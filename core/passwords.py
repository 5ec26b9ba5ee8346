"""Slow salted password hashes (argon2id, Rule 1), computed off the event loop.

argon2-cffi releases the GIL while hashing, so a thread pool keeps the loop (and every other
session) responsive while one login spends tens of milliseconds in argon2.

The pool is the hasher's own and small (HASH_WORKERS): each check at the default cost holds
64 MiB while it runs, so the number of checks in progress, not the number of clients, bounds
that memory. Login guessers from many addresses once took the server to 417 MB on the shared
default executor (six threads here); two threads keep it near 128 MiB and hash as fast on two
vCPUs. Checks beyond that wait their turn, which the login throttle keeps short, in the order
of their ``priority`` (then of arrival): the login throttle gives 0 to an address that logged
in to the name before and has not failed since (the owner, as a rule), so guesses from many
fresh addresses cannot queue up in front of the owner's check (docs/LIMITS.md, "Login").
And one worker is kept for priority 0: other checks hold at most HASH_WORKERS - 1 turns, so
the owner's check never waits for guesses already being checked (20 guessers from fresh
addresses kept both workers busy: the owner waited for two checks, then its own, 1-7 s at a
load of 13), and guessers get one vCPU of argon2, not two.

The checks other than the owner's run at the lowest CPU priority (GUESS_NICENESS, on threads
of their own; argon2's lane threads inherit it): a guess takes only the CPU that the event
loop and the owner's check leave. In the hostile scene argon2 for 253 fresh guessing
addresses took ~44 s of the server's CPU on both vCPUs while the loop waited for a CPU
behind it (docs/LIMITS.md, stop 24). An unknown name and a wrong password from the same kind
of address are checked on the same threads, so they still take the same time (Rule 3).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import argon2

log = logging.getLogger(__name__)

#: Password hashes computed at once (each holds argon2's memory_cost, 64 MiB by default).
HASH_WORKERS = 2
#: A check of priority 0 (the owner's) that took this many seconds or more, from asking for a
#: turn to its end as the event loop saw it, is logged with its split (``password: ...``;
#: the hostile scene reads these lines: where a slow login of the owner waited).
SLOW_OWNER_CHECK = 0.5
#: The niceness of the threads that check passwords of priority > 0 (guesses, a new device's
#: first login, signups): 19, the lowest priority, so argon2's lane threads (they inherit it)
#: take only the CPU the event loop and the owner's check leave (docs/LIMITS.md, stop 24).
#: Unknown names and wrong passwords are checked on the same threads (Rule 3).
GUESS_NICENESS = 19


def lower_this_threads_priority(niceness: int = GUESS_NICENESS) -> None:
    """Make the calling thread (and the threads it starts) yield the CPU: Linux keeps a
    niceness per thread. Raising it needs no privilege; elsewhere, or if refused, nothing."""
    if sys.platform != "linux":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError as exc:
        log.warning("password: could not lower the hashing thread's priority: %s", exc)


class HashCost(enum.Enum):
    """``DEFAULT`` is argon2-cffi's RFC 9106 low-memory profile; ``LOW`` is for tests only."""

    DEFAULT = "default"
    LOW = "low"


def make_hasher(cost: HashCost = HashCost.DEFAULT) -> argon2.PasswordHasher:
    if cost is HashCost.LOW:
        return argon2.PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)
    return argon2.PasswordHasher()


class Passwords:
    def __init__(self, cost: HashCost = HashCost.DEFAULT) -> None:
        self._hasher = make_hasher(cost)
        # Checks of priority 0 (the owner's) run at the process's own priority; the others
        # on threads of the lowest (GUESS_NICENESS): a thread cannot raise its priority
        # back without privilege, so each kind has its own threads. The turns, not the pools,
        # bound how many checks run at once (HASH_WORKERS).
        self._pool = ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="wirechat-argon2")
        self._guess_pool = ThreadPoolExecutor(
            max(1, HASH_WORKERS - 1),
            thread_name_prefix="wirechat-argon2-guess",
            initializer=lower_this_threads_priority,
        )
        self._free = HASH_WORKERS  # turns not taken
        self._others = 0  # turns taken by checks of priority > 0 (at most HASH_WORKERS - 1)
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []  # (priority, seq, waiter)
        self._seq = itertools.count()
        # Verified against when the user does not exist, so that an unknown name costs the
        # same time as a wrong password (Rule 3: no user enumeration, not even by timing).
        self._dummy = self._hasher.hash("wirechat-dummy-password")

    async def hash(self, password: str) -> str:
        return cast(str, await self._run(1, self._hasher.hash, password))

    async def verify(self, stored_hash: str | None, password: str, priority: int = 1) -> bool:
        """Whether ``password`` matches ``stored_hash`` (None: check against a dummy hash, and
        False). Checks wait for a free worker in ``priority`` order (lower first)."""
        try:
            await self._run(priority, self._hasher.verify, stored_hash or self._dummy, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
        return stored_hash is not None

    async def _run(self, priority: int, work: Callable[..., object], *args: object) -> object:
        """``work(*args)`` on a worker, when a turn comes (``_turn``). The turn is given back
        when the worker is done, not when the caller stops waiting: a caller that hangs up
        (a guesser's connection closed) leaves its check running, and a turn given back then
        would queue the next check in the pool behind it, first come first served, where
        priority means nothing (the owner's login waited there behind abandoned guesses)."""
        asked = time.monotonic()
        await self._turn(priority)
        started = time.monotonic()
        pool = self._pool if priority == 0 else self._guess_pool
        done = asyncio.get_running_loop().run_in_executor(pool, work, *args)
        done.add_done_callback(lambda done: self._turn_over(done, priority, asked, started))
        return await asyncio.shield(done)

    def _turn_over(
        self, done: asyncio.Future[object], priority: int, asked: float, started: float
    ) -> None:
        if not done.cancelled():
            done.exception()  # (retrieved: an abandoned check's failure is nobody's error)
        now = time.monotonic()
        if priority == 0 and now - asked >= SLOW_OWNER_CHECK:
            log.info(
                "password: a check of priority 0 waited %.0f ms for a worker and ran %.0f ms "
                "at %.3f (%d checks of others under way)",
                (started - asked) * 1000, (now - started) * 1000, time.time(), self._others,
            )  # fmt: skip
        self._next_turn(priority)

    def _may_take(self, priority: int) -> bool:
        """A free turn may go to a check of ``priority`` (one is kept for priority 0)."""
        return self._free > 0 and (priority == 0 or self._others < max(1, HASH_WORKERS - 1))

    async def _turn(self, priority: int) -> None:
        """Take one of HASH_WORKERS turns, given lowest ``priority`` first, then first come;
        ``_next_turn`` gives it back."""
        queue = self._queue
        if self._may_take(priority) and (not queue or queue[0][0] > priority):
            self._take(priority)  # (the waiters, if any, may not take it: none goes before)
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(queue, (priority, next(self._seq), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # given, then cancelled
                self._next_turn(priority)
            raise

    def _take(self, priority: int) -> None:
        self._free -= 1
        if priority:
            self._others += 1

    def _next_turn(self, priority: int) -> None:
        """A turn of ``priority`` is over: give free turns to the first live waiters that
        may take them (lowest priority first), or keep them free."""
        self._free += 1
        if priority:
            self._others -= 1
        queue = self._queue
        while queue and self._may_take(queue[0][0]):
            first, _, waiter = heapq.heappop(queue)
            if not waiter.done():
                self._take(first)
                waiter.set_result(None)
