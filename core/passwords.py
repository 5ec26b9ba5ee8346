"""Slow salted password hashes (argon2id, Rule 1), computed off the event loop.

argon2-cffi releases the GIL while hashing, so a thread pool keeps the loop (and every other
session) responsive while one login spends tens of milliseconds in argon2.

The pool is the hasher's own and small (HASH_WORKERS): each check at the default cost holds
64 MiB while it runs, so the number of checks in progress, not the number of clients, bounds
that memory. Login guessers from many addresses once took the server to 417 MB on the shared
default executor (six threads here); two threads keep it near 128 MiB and hash as fast on two
vCPUs. Checks beyond that wait in the pool's queue, which the login throttle keeps short.
"""

from __future__ import annotations

import asyncio
import enum
from concurrent.futures import ThreadPoolExecutor

import argon2

#: Password hashes computed at once (each holds argon2's memory_cost, 64 MiB by default).
HASH_WORKERS = 2


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
        self._pool = ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="wirechat-argon2")
        # Verified against when the user does not exist, so that an unknown name costs the
        # same time as a wrong password (Rule 3: no user enumeration, not even by timing).
        self._dummy = self._hasher.hash("wirechat-dummy-password")

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._hasher.hash, password
        )

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self._pool, self._hasher.verify, stored_hash or self._dummy, password
            )
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
        return stored_hash is not None
