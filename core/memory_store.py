"""MemoryStore: the Store interface on plain dicts, for protocol-only benches and tests.

Nothing survives the process: it measures what the transports cost when persistence costs
(almost) nothing, the bench's ``memory`` rows. Semantics match SqliteStore exactly (the
store-contract tests run both): ids increase and are never reused, unknown recipients are
not stored, pattern matching is SQLite GLOB with only ``*``, ``?`` and ``[...]``, names sort
by code point (the same order as SQLite's binary collation over UTF-8), deleted accounts
stay as tombstones, a pending copy always has a history copy.
"""

from __future__ import annotations

import bisect
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from core.store import Account, DuplicateAccount, Member, NotSender, Removed, Store, StoredMessage
from core.types import Conversation, Delivery


@dataclass(slots=True)
class _Account:
    id: int
    username: str
    password_hash: str
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class _Message:
    id: int
    sender_id: int
    conversation_id: int
    body: str
    sent_at_ms: int


class MemoryStore(Store):
    def __init__(self) -> None:
        self._accounts: dict[int, _Account] = {}  # tombstones too
        self._live: dict[str, int] = {}  # live name -> id
        self._names: list[str] = []  # live names, sorted, for paging
        self._conversations: dict[frozenset[int], int] = {}
        self._members: dict[int, frozenset[int]] = {}
        self._messages: dict[int, _Message] = {}
        self._holders: dict[int, set[int]] = {}  # message id -> owners of a history copy
        # owner -> conversation -> message ids, ascending (ids only ever grow, so append)
        self._history: dict[int, dict[int, list[int]]] = {}
        self._pending: dict[int, dict[int, None]] = {}  # recipient -> ids, ascending
        self._read: dict[tuple[int, int], int] = {}
        self._last_account = 0
        self._last_id = 0

    # -- accounts ----------------------------------------------------------------------------
    async def create_account(self, username: str, password_hash: str, now_ms: int) -> int:
        if username in self._live:
            raise DuplicateAccount(username)
        self._last_account += 1
        account_id = self._last_account
        self._accounts[account_id] = _Account(account_id, username, password_hash)
        self._live[username] = account_id
        bisect.insort(self._names, username)
        return account_id

    async def find_account(self, username: str) -> Account | None:
        account_id = self._live.get(username)
        if account_id is None:
            return None
        account = self._accounts[account_id]
        return Account(account.id, account.username, account.password_hash)

    async def account_ids(self, usernames: Sequence[str]) -> dict[str, int]:
        return {name: self._live[name] for name in usernames if name in self._live}

    async def list_accounts(self, glob: str, after: str, limit: int) -> list[str]:
        names = self._names
        found: list[str] = []
        for name in names[bisect.bisect_right(names, after) :]:
            if fnmatch.fnmatchcase(name, glob):
                found.append(name)
                if len(found) >= limit:
                    break
        return found

    async def delete_account(self, account_id: int, purge_sent: bool, now_ms: int) -> Removed:
        removed: Removed = {}
        self._pending.pop(account_id, None)
        for conversation in self._history.pop(account_id, {}).values():
            for message_id in conversation:
                self._drop_holder(message_id, account_id)
        for key in [key for key in self._read if key[0] == account_id]:
            del self._read[key]
        if purge_sent:
            for recipient, pending in self._pending.items():
                for message_id in list(pending):
                    if self._messages[message_id].sender_id == account_id:
                        del pending[message_id]
                        self._remove_copy(recipient, message_id)
                        removed.setdefault(recipient, []).append(message_id)
        account = self._accounts.get(account_id)
        if account is not None and not account.deleted:
            account.deleted = True
            account.password_hash = ""
            del self._live[account.username]
            del self._names[bisect.bisect_left(self._names, account.username)]
        return removed

    # -- messages ----------------------------------------------------------------------------
    async def add_message(
        self, sender_id: int, body: str, now_ms: int, recipients: Sequence[str]
    ) -> StoredMessage:
        stored = {name: self._live[name] for name in recipients if name in self._live}
        if not stored:
            return StoredMessage(0, 0, {})
        ids = set(stored.values())
        members = frozenset(ids | {sender_id})
        conversation_id = self._conversations.get(members)
        if conversation_id is None:
            conversation_id = len(self._conversations) + 1
            self._conversations[members] = conversation_id
            self._members[conversation_id] = members
        self._last_id += 1
        message_id = self._last_id
        self._messages[message_id] = _Message(message_id, sender_id, conversation_id, body, now_ms)
        self._holders[message_id] = set(members)
        for owner in members:
            self._history.setdefault(owner, {}).setdefault(conversation_id, []).append(message_id)
        for recipient in ids:
            self._pending.setdefault(recipient, {})[message_id] = None
        return StoredMessage(message_id, conversation_id, stored)

    async def pending_count(self, recipient_id: int) -> int:
        return len(self._pending.get(recipient_id, ()))

    async def pending_after(self, recipient_id: int, after_id: int, limit: int) -> list[Delivery]:
        page: list[Delivery] = []
        for message_id in self._pending.get(recipient_id, ()):
            if message_id > after_id:
                page.append(self._delivery(recipient_id, message_id))
                if len(page) >= limit:
                    break
        return page

    async def mark_delivered(self, recipient_id: int, message_ids: Sequence[int]) -> None:
        pending = self._pending.get(recipient_id)
        if pending:
            for message_id in message_ids:
                pending.pop(message_id, None)

    # -- history -----------------------------------------------------------------------------
    async def conversation_of(self, member_ids: set[int]) -> int:
        return self._conversations.get(frozenset(member_ids), 0)

    async def members(self, conversation_id: int) -> list[Member]:
        return [
            Member(i, self._accounts[i].username, self._accounts[i].deleted)
            for i in sorted(self._members.get(conversation_id, ()))
        ]

    async def list_conversations(
        self, owner_id: int, before_id: int, limit: int
    ) -> list[Conversation]:
        bound = before_id or 2**63
        lasts = sorted(
            (
                (ids[-1], conversation_id)
                for conversation_id, ids in self._history.get(owner_id, {}).items()
                if ids and ids[-1] < bound
            ),
            reverse=True,
        )[:limit]
        conversations = []
        for last_id, conversation_id in lasts:
            read_up_to = self._read.get((owner_id, conversation_id), 0)
            others = [m for m in await self.members(conversation_id) if m.id != owner_id]
            conversations.append(
                Conversation(
                    conversation_id,
                    tuple(sorted(m.username for m in others)),
                    self._delivery(owner_id, last_id),
                    self._unread(owner_id, conversation_id, read_up_to),
                    read_up_to,
                    tuple(sorted(m.username for m in others if m.deleted)),
                )
            )
        return conversations

    async def read_history(
        self, owner_id: int, conversation_id: int, before_id: int, limit: int
    ) -> list[Delivery]:
        ids = self._history.get(owner_id, {}).get(conversation_id, [])
        end = bisect.bisect_left(ids, before_id) if before_id else len(ids)
        return [self._delivery(owner_id, mid) for mid in reversed(ids[max(0, end - limit) : end])]

    async def read_up_to(self, owner_id: int, conversation_id: int) -> int:
        return self._read.get((owner_id, conversation_id), 0)

    async def mark_read(
        self, owner_id: int, conversation_id: int, up_to_id: int
    ) -> tuple[int, int]:
        ids = self._history.get(owner_id, {}).get(conversation_id)
        mark = min(up_to_id, ids[-1] if ids else 0)
        key = (owner_id, conversation_id)
        if mark > 0:
            self._read[key] = max(self._read.get(key, 0), mark)
        read_up_to = self._read.get(key, 0)
        return read_up_to, self._unread(owner_id, conversation_id, read_up_to)

    async def delete_messages(
        self, owner_id: int, message_ids: Sequence[int], for_everyone: bool
    ) -> Removed:
        ids = sorted(set(message_ids))
        held = [mid for mid in ids if owner_id in self._holders.get(mid, ())]
        if not for_everyone:
            for mid in held:
                self._pending.get(owner_id, {}).pop(mid, None)
                self._remove_copy(owner_id, mid)
            return {owner_id: held} if held else {}
        considered = [
            mid
            for mid in ids
            if mid in self._messages and (mid in held or self._messages[mid].sender_id == owner_id)
        ]
        foreign = [mid for mid in considered if self._messages[mid].sender_id != owner_id]
        if foreign:
            raise NotSender(foreign)
        removed: Removed = {}
        for mid in considered:
            for owner in sorted(self._holders.get(mid, ())):
                removed.setdefault(owner, []).append(mid)
                self._pending.get(owner, {}).pop(mid, None)
                self._remove_copy(owner, mid)
            self._messages.pop(mid, None)
        return removed

    async def prune_history(self, max_per_user: int | None, older_than_ms: int | None) -> int:
        pruned = 0
        for owner, conversations in list(self._history.items()):
            pending = self._pending.get(owner, {})
            copies = sorted(mid for ids in conversations.values() for mid in ids)
            doomed: set[int] = set()
            if older_than_ms is not None:
                doomed.update(m for m in copies if self._messages[m].sent_at_ms < older_than_ms)
            if max_per_user is not None and len(copies) > max_per_user:
                doomed.update(copies[: len(copies) - max_per_user])
            for mid in sorted(doomed):
                if mid not in pending:
                    self._remove_copy(owner, mid)
                    pruned += 1
        return pruned

    async def close(self) -> None:
        self._messages.clear()
        self._pending.clear()
        self._history.clear()

    # -- internals ---------------------------------------------------------------------------
    def _delivery(self, viewer_id: int, message_id: int) -> Delivery:
        message = self._messages[message_id]
        sender = self._accounts[message.sender_id]
        others = tuple(
            sorted(
                self._accounts[i].username
                for i in self._members[message.conversation_id]
                if i != viewer_id
            )
        )
        return Delivery(
            message_id,
            sender.username,
            message.body,
            message.sent_at_ms,
            others,
            sender.deleted,
            message.conversation_id,
        )

    def _unread(self, owner_id: int, conversation_id: int, read_up_to: int) -> int:
        ids = self._history.get(owner_id, {}).get(conversation_id, [])
        return sum(
            1
            for mid in ids[bisect.bisect_right(ids, read_up_to) :]
            if self._messages[mid].sender_id != owner_id
        )

    def _remove_copy(self, owner_id: int, message_id: int) -> None:
        """Remove one history copy (its pending copy is the caller's business)."""
        conversation_id = self._messages[message_id].conversation_id
        ids = self._history.get(owner_id, {}).get(conversation_id)
        if ids:
            at = bisect.bisect_left(ids, message_id)
            if at < len(ids) and ids[at] == message_id:
                del ids[at]
                if not ids:
                    del self._history[owner_id][conversation_id]
        self._drop_holder(message_id, owner_id)

    def _drop_holder(self, message_id: int, owner_id: int) -> None:
        holders = self._holders.get(message_id)
        if holders is None:
            return
        holders.discard(owner_id)
        if not holders:
            del self._holders[message_id]
            self._messages.pop(message_id, None)


__all__ = ["MemoryStore"]
