"""Small helpers for conformance tests (bounded waits only)."""

from __future__ import annotations

import asyncio

from core import ChatClient, Delivery

WAIT = 5.0  # seconds any expected message may take to arrive on a loaded 2-core machine


async def receive(client: ChatClient, count: int = 1, timeout: float = WAIT) -> list[Delivery]:
    """The next ``count`` messages, or TimeoutError."""
    return [await client.next_message(timeout) for _ in range(count)]


async def receive_bodies(client: ChatClient, count: int = 1) -> list[str]:
    return [m.body for m in await receive(client, count)]


async def closed_within(client: ChatClient, timeout: float = WAIT) -> bool:
    """True once the client's message stream has ended (the server closed the session)."""
    try:
        async with asyncio.timeout(timeout):
            async for _ in client.messages():
                pass
    except TimeoutError:
        return False
    return True
