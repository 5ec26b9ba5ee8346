"""The history operations in the bytes-on-the-wire bench (issue 9): their first and steady rows.

``bench/wire.py`` runs :func:`history_calls` with its run (``_Run``), after the messaging
rows (so message ids are past 127); its module docstring defines the method, attribution,
phases and row keys, which hold here unchanged: every call is measured with ``_Run.measured``
(snapshots, settle, the kernel cross-check).

The scenario
    Two accounts of the run: the caller ``wc<tag>h000`` and its peer ``wc<tag>h001``.
    Unmeasured, over direct connections: the caller sends HISTORY_MESSAGES messages of 32 ASCII
    bytes to the peer (who stays offline, so they are pending for it and never pushed), then
    marks the conversation read up to its newest id, so that every measured page and marker
    says the same. The measured calls, each by conversation id:

    read_history        the newest page of HISTORY_PAGE (50) messages; ``more`` is true.
    mark_read           up to the newest id (already the mark: the reply is the same each time).
    list_conversations  one page with the default limit: the caller's one conversation.
    delete_messages     one id, for the caller only, oldest first (so the newest page never
                        changes); the MESSAGES_GONE push the server sends to the caller's own
                        session is part of the call (awaited with the reply).

    ``first``: on each of ``WirePlan.first_passes`` fresh connections, after connect and login,
    the four calls in that order. ``steady``: one connection warmed by WARM_UP_REQUESTS
    unmeasured requests (request ids past 127), then ``WirePlan.repeats`` cycles, as for the
    other steady rows.

No spread
    On gRPC (unary), grpc-core sometimes leaves out the 13-byte stream WINDOW_UPDATE that
    credits the MESSAGES_GONE push on the long-lived push stream; WINDOW_UPDATEs are the
    connection's frames (``CONNECTION_KINDS``), never in a headline, so ``delete_messages`` is
    the same in every call all the same.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bench.payloads import PASSWORD, make_body
from bench.wire_relay import MeasurementError
from core.types import MessagesDeleted

if TYPE_CHECKING:
    from bench.wire import _Run
    from bench.wire_rows import Conn

#: Messages in the page read_history reads (the conversation holds more).
HISTORY_PAGE = 50
#: Unmeasured warm-up requests on the steady connection: the four ops once, then mark_read
#: (the cheapest), so that its request ids are past 127 (three decimal digits in JSON)
#: before the first measured call.
WARM_UP_REQUESTS = 132
HISTORY_OPS = ("read_history", "mark_read", "list_conversations", "delete_messages")
#: Seconds to wait for the MESSAGES_GONE push of a delete.
PUSH_TIMEOUT = 30.0


class _History:
    """One run's history conversation: who reads it, its id, the ids left to delete."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.me, self.peer = run.name("h", 0), run.name("h", 1)
        self.conversation = 0
        self.newest = 0
        self.deletable: list[int] = []  # oldest first

    async def prepare(self) -> None:
        """Accounts and the conversation, over direct (unmeasured) connections."""
        run, plan = self.run, self.run.plan
        count = HISTORY_PAGE + plan.first_passes + plan.repeats + 2 + 4  # + warm-up, spare
        body = make_body(32, "ascii")
        async with run.module.open_client(run.address, auto_ack=False) as client:
            await client.signup(self.peer, PASSWORD)
            run.accounts.append(self.peer)
        async with run.module.open_client(run.address, auto_ack=False) as client:
            await client.signup(self.me, PASSWORD)
            run.accounts.append(self.me)
            sent = [await client.send([self.peer], body) for _ in range(count)]
            self.conversation, self.newest = sent[-1].conversation_id, sent[-1].message_id
            await client.mark_read(self.conversation, self.newest)
        self.deletable = [r.message_id for r in sent[:-HISTORY_PAGE]]

    async def read(self, conn: Conn) -> None:
        page = await conn.client.read_history(conversation_id=self.conversation, limit=HISTORY_PAGE)
        if len(page.messages) != HISTORY_PAGE or page.messages[0].message_id != self.newest:
            raise MeasurementError(f"read_history gave {len(page.messages)} messages, not 50")

    async def delete(self, conn: Conn, message_id: int) -> None:
        """Delete one id for me and wait for the push that tells my own session."""

        async def gone() -> None:
            async with asyncio.timeout(PUSH_TIMEOUT):
                while True:
                    event = await conn.client.next_event(PUSH_TIMEOUT)
                    if isinstance(event, MessagesDeleted) and message_id in event.message_ids:
                        return

        await asyncio.gather(conn.client.delete_messages([message_id]), gone())

    async def cycle(self, conn: Conn, phase: str | None) -> None:
        """The four ops once each, measured under ``phase`` (or not measured when None)."""
        message_id = self.deletable.pop(0)
        ops: list[tuple[str, Any, int]] = [
            ("read_history", lambda: self.read(conn), self.newest),
            (
                "mark_read",
                lambda: conn.client.mark_read(self.conversation, self.newest),
                self.newest,
            ),
            ("list_conversations", lambda: conn.client.list_conversations(), self.newest),
            ("delete_messages", lambda: self.delete(conn, message_id), message_id),
        ]
        for op, start, ident in ops:
            if phase is None:
                await start()
                continue
            _, (call,) = await self.run.measured([conn], start)
            call.message_id = ident
            self.run.keep(op, phase, call)

    async def login(self) -> Conn:
        conn = await self.run.connect()
        await self.run.call(conn, conn.client.login, self.me, PASSWORD)
        return conn


async def history_calls(run: _Run) -> None:
    """The ``first`` and ``steady`` rows of the four history operations (module docstring)."""
    history = _History(run)
    await history.prepare()
    for _ in range(run.plan.first_passes):
        conn = await history.login()
        await history.cycle(conn, "first")
        await run.disconnect(conn)
    conn = await history.login()

    async def warm_up() -> None:
        await history.cycle(conn, None)  # each op once, one delete (and its push) among them
        for _ in range(WARM_UP_REQUESTS - len(HISTORY_OPS)):
            await conn.client.mark_read(history.conversation, history.newest)

    await run.unmeasured([conn], warm_up)
    made = 0
    rows: list[tuple[str, dict[str, Any]]] = [(op, {}) for op in HISTORY_OPS]
    while not run.enough(made, run.plan.repeats, *rows):
        await history.cycle(conn, "steady")
        made += 1
    await run.disconnect(conn)


__all__ = ["HISTORY_OPS", "HISTORY_PAGE", "history_calls"]
