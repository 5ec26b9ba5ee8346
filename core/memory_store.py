"""MemoryStore: the Store interface on plain dicts, for protocol-only benches and tests.

Nothing survives the process: it measures what the transports cost when persistence costs
(almost) nothing, the bench's ``memory`` rows. Semantics match SqliteStore exactly (the
store-contract tests run both): ids increase and are never reused, unknown recipients are
not stored, pattern matching is SQLite GLOB with only ``*``, ``?`` and ``[...]``, names sort
by code point (the same order as SQLite's binary collation over UTF-8).
"""

from __future__ import annotations

import bisect
import fnmatch
from collections.abc import Sequence

from core.store import DuplicateAccount, Store
from core.types import Delivery


class MemoryStore(Store):
    def __init__(self) -> None:
        self._hashes: dict[str, str] = {}
        self._names: list[str] = []  # sorted, for paging
        self._messages: dict[int, Delivery] = {}
        self._copies: dict[int, int] = {}  # message id -> pending copies left
        self._pending: dict[str, dict[int, None]] = {}  # recipient -> ids, ascending
        self._last_id = 0

    async def create_account(self, username: str, password_hash: str, now_ms: int) -> None:
        if username in self._hashes:
            raise DuplicateAccount(username)
        self._hashes[username] = password_hash
        bisect.insort(self._names, username)

    async def password_hash(self, username: str) -> str | None:
        return self._hashes.get(username)

    async def list_accounts(self, glob: str, after: str, limit: int) -> list[str]:
        names = self._names
        found: list[str] = []
        for name in names[bisect.bisect_right(names, after) :]:
            if fnmatch.fnmatchcase(name, glob):
                found.append(name)
                if len(found) >= limit:
                    break
        return found

    async def add_message(
        self, sender: str, body: str, now_ms: int, recipients: Sequence[str]
    ) -> tuple[int, set[str]]:
        stored = {name for name in recipients if name in self._hashes}
        if not stored:
            return 0, stored
        self._last_id += 1
        message_id = self._last_id
        self._messages[message_id] = Delivery(message_id, sender, body, now_ms)
        self._copies[message_id] = len(stored)
        for name in stored:
            self._pending.setdefault(name, {})[message_id] = None
        return message_id, stored

    async def pending_count(self, recipient: str) -> int:
        return len(self._pending.get(recipient, ()))

    async def pending_after(self, recipient: str, after_id: int, limit: int) -> list[Delivery]:
        page: list[Delivery] = []
        for message_id in self._pending.get(recipient, ()):
            if message_id > after_id:
                page.append(self._messages[message_id])
                if len(page) >= limit:
                    break
        return page

    async def mark_delivered(self, recipient: str, message_ids: Sequence[int]) -> None:
        pending = self._pending.get(recipient)
        if not pending:
            return
        for message_id in message_ids:
            if pending.pop(message_id, False) is None:  # was pending
                self._drop_copy(message_id)

    async def delete_account(self, username: str, purge_sent: bool) -> None:
        for message_id in self._pending.pop(username, {}):
            self._drop_copy(message_id)
        if purge_sent:
            sent = [m.message_id for m in self._messages.values() if m.sender == username]
            for message_id in sent:
                for pending in self._pending.values():
                    pending.pop(message_id, None)
                self._messages.pop(message_id, None)
                self._copies.pop(message_id, None)
        if self._hashes.pop(username, None) is not None:
            del self._names[bisect.bisect_left(self._names, username)]

    def _drop_copy(self, message_id: int) -> None:
        left = self._copies[message_id] - 1
        if left:
            self._copies[message_id] = left
        else:
            del self._copies[message_id]
            del self._messages[message_id]

    async def close(self) -> None:
        self._messages.clear()
        self._pending.clear()


__all__ = ["MemoryStore"]
