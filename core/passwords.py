"""Slow salted password hashes (argon2id, Rule 1), computed off the event loop.

argon2-cffi releases the GIL while hashing, so a thread pool keeps the loop (and every other
session) responsive while one login spends tens of milliseconds in argon2.
"""

from __future__ import annotations

import asyncio
import enum

import argon2


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
        # Verified against when the user does not exist, so that an unknown name costs the
        # same time as a wrong password (Rule 3: no user enumeration, not even by timing).
        self._dummy = self._hasher.hash("wirechat-dummy-password")

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                None, self._hasher.verify, stored_hash or self._dummy, password
            )
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
        return stored_hash is not None
