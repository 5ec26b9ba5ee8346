"""Helpers for the cluster tests: a send load that records what was acknowledged, and a
reader that records every delivery a session got as the server sent it (before the client's
own duplicate filter), so a test can say "each once, in order"."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from core import ChatClient, ChatError, Delivery
from tests.cluster.conftest import CONVERGE
from tests.conformance.conftest import Chat

PW = "cluster-pw-7781"


@dataclass
class Reader:
    """A logged-in session whose deliveries are recorded as they arrive (``raw``: every
    DELIVER the server sent, duplicates included)."""

    client: ChatClient
    raw: list[Delivery] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, chat: Chat, name: str, *, signup: bool = False, auto_ack: bool = True
    ) -> Reader:
        client = await chat.client(auto_ack=auto_ack)
        reader = cls(client)
        plain = client.delivered

        def delivered(delivery: Delivery) -> None:
            reader.raw.append(delivery)
            plain(delivery)

        client.delivered = delivered  # type: ignore[method-assign]
        await (client.signup(name, PW) if signup else client.login(name, PW))
        reader.task = asyncio.get_running_loop().create_task(reader._drain())
        return reader

    async def _drain(self) -> None:
        with contextlib.suppress(ChatError, ConnectionError):
            async for _ in self.client.messages():  # (acks each, with auto_ack)
                pass

    @property
    def ids(self) -> set[int]:
        return {d.message_id for d in self.raw}

    def check_once_in_order(self) -> None:
        """No id twice, ids rising (one recipient's messages come in commit order), and so
        each sender's messages in the order sent (Rules 10, 13)."""
        ids = [d.message_id for d in self.raw]
        assert len(ids) == len(set(ids)), "a delivery came twice"
        assert ids == sorted(ids), "deliveries out of order"

    async def wait_for(self, wanted: set[int], timeout: float = CONVERGE) -> None:
        """Until this session got every id in ``wanted`` (bounded)."""
        deadline = time.monotonic() + timeout
        while not wanted <= self.ids:
            if time.monotonic() > deadline:
                missing = sorted(wanted - self.ids)
                raise AssertionError(f"{len(missing)} acknowledged never arrived: {missing[:10]}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@dataclass
class Load:
    """Senders sending to ``recipients`` as fast as they are answered, until ``stop`` or their
    node dies. ``acked``: message id -> (sender, index) of every send that returned."""

    recipients: list[str]
    acked: dict[int, tuple[str, int]] = field(default_factory=dict)
    failed: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, senders: list[tuple[str, ChatClient]], limit: int = 400) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(n, c, limit)) for n, c in senders]

    async def _run(self, name: str, client: ChatClient, limit: int) -> None:
        for i in range(limit):
            if self._stop.is_set():
                return
            try:
                result = await asyncio.wait_for(client.send(self.recipients, f"{name} {i}"), 10)
            except (ChatError, ConnectionError, TimeoutError, OSError):
                self.failed += 1  # its node died: not acknowledged, nothing promised
                return
            self.acked[result.message_id] = (name, i)

    async def until(self, count: int, timeout: float = CONVERGE) -> None:
        """Until ``count`` sends were acknowledged (bounded)."""
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.acked)} sends were acknowledged")
            await asyncio.sleep(0.01)

    async def finish(self) -> None:
        """Until every sender stopped on its own (its limit, or its node died)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
