"""Issue 14, defect 10: deleting an account from the memory store must not freeze the loop.
Before the fix it walked every pending message of every user (and removed a long
conversation's ids one by one), in one loop turn; an account with 30,000 undelivered messages
to 1,000 users held the loop for about 0.1-1.8 s. Now indexes find what goes, and the work
runs in slices with the loop free between them. A canary task counts its turns meanwhile."""

from __future__ import annotations

import pytest
from test_list_accounts_scan import with_canary  # (a sibling: tests/hardening is on sys.path)

from core import ChatService, HashCost, MemoryStore
from core.types import MessagesDeleted

pytestmark = pytest.mark.timeout(120)
USERS = 1000
MESSAGES = 30_000


async def test_deleting_an_account_with_30k_undelivered_messages_leaves_the_loop_free() -> None:
    store = MemoryStore()
    service = ChatService(store, hash_cost=HashCost.LOW)
    names = [f"u{i:04d}" for i in range(USERS)]
    watcher = service.open_session("127.0.0.2")  # u0000, online: told what vanished
    await service.signup(watcher, names[0], "pw-12345678")
    ids = [store._live[names[0]]] + [await store.create_account(n, "h", 0) for n in names[1:]]
    leaver = service.open_session("127.0.0.1")
    await service.signup(leaver, "leaver", "pw-12345678")
    sender = store._live["leaver"]
    for i in range(MESSAGES):
        await store.add_message(sender, f"m{i}", 0, [names[i % USERS]])
    for i in range(MESSAGES):  # others' pending messages, which the deletion must not touch
        await store.add_message(ids[i % USERS], "stays", 0, [names[(i * 7 + 1) % USERS]])

    _, turns = await with_canary(service.delete_account(leaver, "leaver", "pw-12345678"))
    assert turns >= 20  # the loop served others while the deletion ran (0 turns before)
    # ... and the deletion did all of Rule 15: every undelivered message went, nothing else.
    assert [await store.pending_count(i) for i in ids] == [MESSAGES // USERS] * USERS
    assert [d.body for d in await store.pending_after(ids[0], 0, 100)] == ["stays"] * 30
    gone = [e for e in watcher._live if isinstance(e, MessagesDeleted)]
    assert len(gone) == 1 and len(gone[0].message_ids) == MESSAGES // USERS
    assert await store.find_account("leaver") is None
