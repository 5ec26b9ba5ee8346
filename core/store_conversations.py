"""The conversation list (Rule 21) as every store builds it: shared by the SQLite, PostgreSQL
and memory stores, each of which keeps only its own queries.

A store first finds the owner's conversations and the id of the last message of each in the
owner's history (newest first, one query); :func:`conversation_list` then turns each into a
:class:`~core.types.Conversation` through the store: that last message as the owner sees it
(``last_delivery``; None: deleted since the first query ran, and the conversation is left
out), the owner's read mark, the members, and the unread count above the mark (``unread``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from core.store import Store
from core.types import Conversation, Delivery

#: (owner id, message id) -> that message as the owner sees it; None if it is gone.
LastDelivery = Callable[[int, int], Awaitable[Delivery | None]]
#: (owner id, conversation id, read mark) -> messages from others above the mark.
UnreadCount = Callable[[int, int, int], Awaitable[int]]


async def conversation_list(
    store: Store,
    owner_id: int,
    lasts: Iterable[tuple[int, int]],
    last_delivery: LastDelivery,
    unread: UnreadCount,
) -> list[Conversation]:
    """The owner's conversations for ``lasts``, (conversation id, last message id) pairs in
    the order the store's query found them (see the module docstring): ``participants`` the
    *other* members' names, sorted, ``deleted_participants`` those of them whose account was
    deleted."""
    conversations = []
    for conversation_id, last_id in lasts:
        last = await last_delivery(owner_id, last_id)
        if last is None:  # (deleted since the store's query ran)
            continue
        read_up_to = await store.read_up_to(owner_id, conversation_id)
        others = [m for m in await store.members(conversation_id) if m.id != owner_id]
        conversations.append(
            Conversation(
                conversation_id,
                tuple(sorted(m.username for m in others)),
                last,
                await unread(owner_id, conversation_id, read_up_to),
                read_up_to,
                tuple(sorted(m.username for m in others if m.deleted)),
            )
        )
    return conversations


__all__ = ["LastDelivery", "UnreadCount", "conversation_list"]
