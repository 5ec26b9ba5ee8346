"""MemoryStore: the Store interface on plain dicts, for protocol-only benches and tests.

Nothing survives the process: it measures what the transports cost when persistence costs
(almost) nothing, the bench's ``memory`` rows. Semantics match SqliteStore exactly (the
store-contract tests run both): ids increase and are never reused, unknown recipients are
not stored, pattern matching is SQLite GLOB with only ``*``, ``?`` and ``[...]``, names sort
by code point (the same order as SQLite's binary collation over UTF-8), deleted accounts
stay as tombstones, a pending copy always has a history copy.

No call holds the event loop for long (issue 14: a request may cost ~1 ms of loop time):
list_accounts narrows a pattern's literal prefix in the sorted name index and scans the rest in
slices of SLICE_SECONDS, yielding between them; delete_account finds what it deletes through
indexes (the pending copies each sender still has out, read marks by owner) and yields between
slices too. Each slice is consistent on its own; a listing or a deletion in progress may or may
not see a change made between two of its slices, as with any read that is not one snapshot.
"""

from __future__ import annotations

import asyncio
import bisect
import fnmatch
import functools
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from core import limits
from core.frozen import builder
from core.store import Account, DuplicateAccount, Member, NotSender, Removed, Store, StoredMessage
from core.store_conversations import conversation_list
from core.store_glob import prefix_range
from core.types import Conversation, Delivery

#: Loop time one slice of a long listing or deletion may take before it yields to other work.
#: Half the ~1 ms a request may hold the loop (issue 14), so a slice plus its setup fits.
SLICE_SECONDS = 0.0005
#: Names list_accounts matches between two looks at the clock.
_LIST_CHUNK = 128
#: Items handled between two looks at the clock (a look costs about as much as a few items).
_CHECK_EVERY = 64


@functools.lru_cache(maxsize=256)
def _matcher(glob: str) -> Callable[[Iterable[str]], Iterable[str]]:
    """A filter of names by SQLite GLOB (``*``, ``?``, ``[...]``, as fnmatchcase reads it).

    The names are first narrowed by the longest literal run of the pattern (a substring
    search in C, ~10 times faster than the full match), then matched in full.
    """
    full = re.compile(fnmatch.translate(glob)).match
    literal = "" if "[" in glob else max(re.split(r"[*?]", glob), key=len)
    if len(literal) < 2:
        return functools.partial(filter, full)
    needle = re.compile(re.escape(literal)).search
    return lambda names: filter(full, filter(needle, names))


class _Slicer:
    """Counts items and says when the current slice of loop time is used up."""

    def __init__(self) -> None:
        self._deadline = time.perf_counter() + SLICE_SECONDS
        self._count = 0

    def spent(self) -> bool:
        self._count += 1
        if self._count % _CHECK_EVERY:
            return False
        return time.perf_counter() >= self._deadline

    async def pause(self) -> None:
        await asyncio.sleep(0)
        self._deadline = time.perf_counter() + SLICE_SECONDS


@dataclass(slots=True)
class _Account:
    id: int
    username: str
    password_hash: str
    deleted: bool = False


#: A stored message (never changed once stored): (sender id, conversation id, body, sent at).
#: A plain tuple, read through these indexes: built once per send, where a frozen
#: dataclass's ``__init__`` cost ~8,500 instructions and a slotted class's ~2,100 (callgrind,
#: CPython 3.11); a tuple of numbers and text is also left alone by the cycle collector.
_Message = tuple[int, int, str, int]
_SENDER: Final = 0
_CONVERSATION: Final = 1
_BODY: Final = 2
_SENT_AT: Final = 3


#: ``StoredMessage(...)`` at a third of the cost, once per send (core.frozen).
_stored_message = builder(StoredMessage)

#: What a send's names lead to (``MemoryStore._route``): the names found -> their ids (shared
#: by every message of the route: read, never changed), the conversation's members (the
#: stored set), its id and the ids found; ({}, empty, 0, empty) when no name has an account.
_Route = tuple[dict[str, int], frozenset[int], int, frozenset[int]]
#: Routes kept at most (then forgotten all at once: a route costs one lookup to rebuild).
_ROUTES = 4096
_NO_ROUTE: _Route = ({}, frozenset(), 0, frozenset())
#: The names a message that was not stored went to (none; shared, read only).
_NOBODY: dict[str, int] = {}


class MemoryStore(Store):
    def __init__(self) -> None:
        self._accounts: dict[int, _Account] = {}  # tombstones too
        self._live: dict[str, int] = {}  # live name -> id
        self._names: list[str] = []  # live names, sorted, for paging
        self._conversations: dict[frozenset[int], int] = {}
        self._members: dict[int, frozenset[int]] = {}
        self._messages: dict[int, _Message] = {}
        # (Sets of ids below are dicts with None values: a dict holding only ints is never
        # tracked by the cycle collector, a set always is; three objects per message were.)
        # message id -> owners of a history copy: the conversation's own members (shared, not
        # an object per message) until one of them loses its copy (``_drop_holder``)
        self._holders: dict[int, frozenset[int] | dict[int, None]] = {}
        # owner -> conversation -> message ids, ascending (ids only ever grow, so append)
        self._history: dict[int, dict[int, list[int]]] = {}
        self._pending: dict[int, dict[int, None]] = {}  # recipient -> ids, ascending
        # sender -> message id -> recipients still holding a pending copy (what a deletion
        # of the sender purges, found without walking everyone's pending messages): the
        # route's set of them (shared) until one acks (``_unpend_index``)
        self._unacked: dict[int, dict[int, frozenset[int] | dict[int, None]]] = {}
        self._read: dict[int, dict[int, int]] = {}  # owner -> conversation -> read mark
        self._last_account = 0
        self._last_id = 0
        self._tokens: dict[bytes, tuple[int, int]] = {}  # token hash -> (account, expiry)
        self._tokens_of: dict[int, set[bytes]] = {}  # account -> its token hashes
        #: (sender id, recipient names as a tuple) -> its ``_Route``: a send's name lookups and
        #: conversation, kept while no name comes or goes (create/delete_account forget them).
        self._routes: dict[tuple[int, tuple[str, ...]], _Route] = {}

    # -- accounts ----------------------------------------------------------------------------
    async def create_account(self, username: str, password_hash: str, now_ms: int) -> int:
        if username in self._live:
            raise DuplicateAccount(username)
        self._last_account += 1
        account_id = self._last_account
        self._accounts[account_id] = _Account(account_id, username, password_hash)
        self._live[username] = account_id
        bisect.insort(self._names, username)
        self._routes.clear()  # (a name that led nowhere may lead to this account now)
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
        match = _matcher(glob)
        prefix, above = prefix_range(glob)  # (as the SQL stores narrow their index)
        found: list[str] = []
        deadline = time.perf_counter() + SLICE_SECONDS
        while True:
            # (Re)locate the range after each pause: signups and deletions move indexes.
            names = self._names
            lo = max(bisect.bisect_right(names, after), bisect.bisect_left(names, prefix))
            hi = bisect.bisect_left(names, above, lo) if above is not None else len(names)
            while lo < hi:
                chunk = names[lo : min(hi, lo + _LIST_CHUNK)]
                found.extend(match(chunk))  # (loops in C)
                if len(found) >= limit:
                    return found[:limit]
                lo += len(chunk)
                if time.perf_counter() >= deadline:
                    break
            else:
                return found
            after = chunk[-1]
            await asyncio.sleep(0)
            deadline = time.perf_counter() + SLICE_SECONDS

    async def delete_account(self, account_id: int, purge_sent: bool, now_ms: int) -> Removed:
        # The account goes first, in one step: from here on no login finds it and no message
        # can be stored for it or from it (add_message). What it leaves behind is then removed
        # in slices, each one consistent, with the loop free for others in between.
        account = self._accounts.get(account_id)
        await self.revoke_resume_tokens(account_id)
        if account is not None and not account.deleted:
            account.deleted = True
            account.password_hash = ""
            del self._live[account.username]
            self._routes.clear()
            del self._names[bisect.bisect_left(self._names, account.username)]
        slicer = _Slicer()
        self._read.pop(account_id, None)
        for message_id in self._pending.pop(account_id, {}):
            self._unpend_index(account_id, message_id)
            if slicer.spent():
                await slicer.pause()
        for ids in self._history.pop(account_id, {}).values():
            for message_id in ids:
                self._drop_holder(message_id, account_id)
                if slicer.spent():
                    await slicer.pause()
        removed: Removed = {}
        if purge_sent:
            doomed: dict[tuple[int, int], set[int]] = {}  # (owner, conversation) -> ids
            unacked = self._unacked.pop(account_id, {})
            while unacked:  # (popped one by one: freeing 30,000 sets at once takes ms too)
                message_id, recipients = unacked.popitem()
                for recipient in recipients:
                    if self._pending.get(recipient, {}).pop(message_id, 0) is not None:
                        continue  # acked meanwhile: delivered, so it stays (values are None)
                    conversation_id = self._messages[message_id][_CONVERSATION]
                    doomed.setdefault((recipient, conversation_id), set()).add(message_id)
                    removed.setdefault(recipient, []).append(message_id)
                    if slicer.spent():
                        await slicer.pause()
            # One pass over each affected history list (deleting ids one by one from a long
            # list would move its tail once per id).
            for (owner, conversation_id), gone in doomed.items():
                self._remove_from_history(owner, conversation_id, gone)
                for message_id in gone:
                    self._drop_holder(message_id, owner)
                    if slicer.spent():
                        await slicer.pause()
        return removed

    # -- messages ----------------------------------------------------------------------------
    async def add_message(
        self, sender_id: int, body: str, now_ms: int, recipients: Sequence[str]
    ) -> StoredMessage:
        message_id, conversation_id, stored = self.add_message_now(
            sender_id, body, now_ms, recipients
        )
        # (nothing stored: a dict of its own, as before add_message_now; _NOBODY is shared)
        return _stored_message(message_id, conversation_id, stored if message_id else {}, {})

    def add_message_now(
        self, sender_id: int, body: str, now_ms: int, recipients: Sequence[str]
    ) -> tuple[int, int, dict[str, int]]:
        """``add_message`` as a plain call (it never waits): (message id, conversation id, the
        names stored for -> their ids), without a coroutine and a StoredMessage to carry them
        (ChatService.send calls this when a store has it; a subclass that changes
        ``add_message`` must change this too). The dict is shared: read it, never change it."""
        # The hot path of a send, written out (a comprehension or a setdefault chain costs
        # an object per call; each Python call costs about as much as a map update).
        if self._accounts[sender_id].deleted:  # (a deletion is under way)
            return 0, 0, _NOBODY
        if type(recipients) is tuple:  # (the service's usual case: the route is kept)
            key = (sender_id, recipients)
            route = self._routes.get(key)
            if route is None:
                if len(self._routes) >= _ROUTES:
                    self._routes.clear()
                route = self._routes[key] = self._route(sender_id, recipients)
        else:
            route = self._route(sender_id, recipients)
        stored, members, conversation_id, recipient_ids = route
        if not stored:
            return 0, 0, _NOBODY
        self._last_id = message_id = self._last_id + 1
        self._messages[message_id] = (sender_id, conversation_id, body, now_ms)
        self._holders[message_id] = members
        history = self._history
        for owner in members:
            mine = history.get(owner)
            if mine is None:
                history[owner] = {conversation_id: [message_id]}
                continue
            ids = mine.get(conversation_id)
            if ids is None:
                mine[conversation_id] = [message_id]
            else:
                ids.append(message_id)
        pending = self._pending
        for recipient_id in recipient_ids:
            waiting = pending.get(recipient_id)
            if waiting is None:
                pending[recipient_id] = {message_id: None}
            else:
                waiting[message_id] = None
        out = self._unacked.get(sender_id)
        if out is None:
            out = self._unacked[sender_id] = {}
        out[message_id] = recipient_ids
        return message_id, conversation_id, stored

    def _route(self, sender_id: int, recipients: Sequence[str]) -> _Route:
        """Where a message from ``sender_id`` to ``recipients`` goes: the names that have an
        account, and the conversation of those and the sender (made now if new)."""
        live = self._live
        stored: dict[str, int] = {}
        for name in recipients:
            recipient_id = live.get(name)
            if recipient_id is not None:
                stored[name] = recipient_id
        if not stored:
            return _NO_ROUTE
        members = frozenset((*stored.values(), sender_id))
        conversation_id = self._conversations.get(members)
        if conversation_id is None:
            conversation_id = len(self._conversations) + 1
            self._conversations[members] = conversation_id
            self._members[conversation_id] = members
        return stored, self._members[conversation_id], conversation_id, frozenset(stored.values())

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
                if pending.pop(message_id, 0) is None:  # (the values are all None)
                    self._unpend_index(recipient_id, message_id)

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
                (conversation_id, ids[-1])
                for conversation_id, ids in self._history.get(owner_id, {}).items()
                if ids and ids[-1] < bound
            ),
            key=lambda found: found[1],  # (a message is in one conversation: no ties)
            reverse=True,
        )[:limit]
        return await conversation_list(self, owner_id, lasts, self._last_delivery, self._unread)

    async def read_history(
        self, owner_id: int, conversation_id: int, before_id: int, limit: int
    ) -> list[Delivery]:
        ids = self._history.get(owner_id, {}).get(conversation_id, [])
        end = bisect.bisect_left(ids, before_id) if before_id else len(ids)
        return [self._delivery(owner_id, mid) for mid in reversed(ids[max(0, end - limit) : end])]

    async def read_up_to(self, owner_id: int, conversation_id: int) -> int:
        return self._read.get(owner_id, {}).get(conversation_id, 0)

    async def mark_read(
        self, owner_id: int, conversation_id: int, up_to_id: int
    ) -> tuple[int, int]:
        ids = self._history.get(owner_id, {}).get(conversation_id)
        mark = min(up_to_id, ids[-1] if ids else 0)
        if mark > 0:
            marks = self._read.setdefault(owner_id, {})
            marks[conversation_id] = max(marks.get(conversation_id, 0), mark)
        read_up_to = self._read.get(owner_id, {}).get(conversation_id, 0)
        return read_up_to, await self._unread(owner_id, conversation_id, read_up_to)

    async def delete_messages(
        self, owner_id: int, message_ids: Sequence[int], for_everyone: bool
    ) -> Removed:
        ids = sorted(set(message_ids))
        held = [mid for mid in ids if owner_id in self._holders.get(mid, ())]
        if not for_everyone:
            for mid in held:
                self._unpend(owner_id, mid)
                self._remove_copy(owner_id, mid)
            return {owner_id: held} if held else {}
        considered = [
            mid
            for mid in ids
            if mid in self._messages and (mid in held or self._messages[mid][_SENDER] == owner_id)
        ]
        foreign = [mid for mid in considered if self._messages[mid][_SENDER] != owner_id]
        if foreign:
            raise NotSender(foreign)
        removed: Removed = {}
        for mid in considered:
            for owner in sorted(self._holders.get(mid, ())):
                removed.setdefault(owner, []).append(mid)
                self._unpend(owner, mid)
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
                doomed.update(m for m in copies if self._messages[m][_SENT_AT] < older_than_ms)
            if max_per_user is not None and len(copies) > max_per_user:
                doomed.update(copies[: len(copies) - max_per_user])
            for mid in sorted(doomed):
                if mid not in pending:
                    self._remove_copy(owner, mid)
                    pruned += 1
        return pruned

    # -- account security (issue 13) ---------------------------------------------------------
    async def set_password_hash(self, account_id: int, password_hash: str) -> None:
        account = self._accounts.get(account_id)
        if account is not None and not account.deleted:
            account.password_hash = password_hash

    async def add_resume_token(
        self, account_id: int, token_hash: bytes, expires_at_ms: int
    ) -> None:
        mine = self._tokens_of.setdefault(account_id, set())
        self._tokens[token_hash] = (account_id, expires_at_ms)
        mine.add(token_hash)
        if len(mine) > limits.MAX_RESUME_TOKENS_PER_ACCOUNT:
            by_expiry = sorted(mine, key=lambda h: (self._tokens[h][1], h))
            for old in by_expiry[: len(mine) - limits.MAX_RESUME_TOKENS_PER_ACCOUNT]:
                await self.revoke_resume_token(old)

    async def resume_account(self, token_hash: bytes, now_ms: int) -> tuple[int, str] | None:
        found = self._tokens.get(token_hash)
        if found is None:
            return None
        account_id, expires_at_ms = found
        account = self._accounts.get(account_id)
        if expires_at_ms <= now_ms or account is None or account.deleted:
            await self.revoke_resume_token(token_hash)
            return None
        return account_id, account.username

    async def revoke_resume_token(self, token_hash: bytes) -> None:
        found = self._tokens.pop(token_hash, None)
        if found is not None:
            mine = self._tokens_of.get(found[0])
            if mine is not None:
                mine.discard(token_hash)
                if not mine:
                    del self._tokens_of[found[0]]

    async def revoke_resume_tokens(self, account_id: int) -> None:
        for token_hash in self._tokens_of.pop(account_id, set()):
            self._tokens.pop(token_hash, None)

    async def close(self) -> None:
        self._messages.clear()
        self._pending.clear()
        self._unacked.clear()
        self._history.clear()

    # -- internals ---------------------------------------------------------------------------
    def _delivery(self, viewer_id: int, message_id: int) -> Delivery:
        message = self._messages[message_id]
        sender = self._accounts[message[_SENDER]]
        others = tuple(
            sorted(
                self._accounts[i].username
                for i in self._members[message[_CONVERSATION]]
                if i != viewer_id
            )
        )
        return Delivery(
            message_id,
            sender.username,
            message[_BODY],
            message[_SENT_AT],
            others,
            sender.deleted,
            message[_CONVERSATION],
        )

    async def _last_delivery(self, owner_id: int, message_id: int) -> Delivery:
        return self._delivery(owner_id, message_id)

    async def _unread(self, owner_id: int, conversation_id: int, read_up_to: int) -> int:
        ids = self._history.get(owner_id, {}).get(conversation_id, [])
        return sum(
            1
            for mid in ids[bisect.bisect_right(ids, read_up_to) :]
            if self._messages[mid][_SENDER] != owner_id
        )

    def _unpend(self, recipient_id: int, message_id: int) -> None:
        """Remove one pending copy, if there is one, and its index entry."""
        if self._pending.get(recipient_id, {}).pop(message_id, 0) is None:
            self._unpend_index(recipient_id, message_id)

    def _unpend_index(self, recipient_id: int, message_id: int) -> None:
        """The pending copy of ``message_id`` for ``recipient_id`` is gone: forget it in
        its sender's index of unacknowledged copies."""
        message = self._messages.get(message_id)
        if message is None:
            return
        out = self._unacked.get(message[_SENDER])
        if out is None:
            return
        found = out.get(message_id)
        if found is not None and recipient_id in found:
            if isinstance(found, dict):
                waiting = found
            else:  # (no one had acked it: the route's shared set, copied now)
                waiting = out[message_id] = dict.fromkeys(found)
            del waiting[recipient_id]
            if not waiting:
                del out[message_id]
                if not out:
                    del self._unacked[message[_SENDER]]

    def _remove_from_history(
        self, owner_id: int, conversation_id: int, message_ids: set[int]
    ) -> None:
        """Take many ids out of one conversation's history list in one pass (the holders are
        the caller's business)."""
        conversations = self._history.get(owner_id, {})
        ids = conversations.get(conversation_id)
        if ids:
            ids[:] = [mid for mid in ids if mid not in message_ids]
            if not ids:
                del conversations[conversation_id]

    def _remove_copy(self, owner_id: int, message_id: int) -> None:
        """Remove one history copy (its pending copy is the caller's business)."""
        message = self._messages.get(message_id)
        if message is None:
            return
        conversation_id = message[_CONVERSATION]
        ids = self._history.get(owner_id, {}).get(conversation_id)
        if ids:
            at = bisect.bisect_left(ids, message_id)
            if at < len(ids) and ids[at] == message_id:
                del ids[at]
                if not ids:
                    del self._history[owner_id][conversation_id]
        self._drop_holder(message_id, owner_id)

    def _drop_holder(self, message_id: int, owner_id: int) -> None:
        found = self._holders.get(message_id)
        if found is None or owner_id not in found:
            return
        if isinstance(found, dict):
            holders = found
        else:  # (every member still held it: the conversation's shared set, copied now)
            holders = self._holders[message_id] = dict.fromkeys(found)
        del holders[owner_id]
        if not holders:
            del self._holders[message_id]
            self._messages.pop(message_id, None)


__all__ = ["MemoryStore"]
