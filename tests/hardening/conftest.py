"""Fixtures shared by the hardening tests (this folder is on sys.path, so its modules also
import helpers from each other, e.g. ``from test_custom_limits import Peer``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from core import ChatService, HashCost, SqliteStore


@pytest_asyncio.fixture
async def service() -> AsyncIterator[ChatService]:
    """An in-process ChatService on an in-memory SQLite store (argon2 at test cost); its
    sessions ended and its store closed afterwards. A module may define its own."""
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    yield service
    await service.shutdown()
    await service.store.close()
