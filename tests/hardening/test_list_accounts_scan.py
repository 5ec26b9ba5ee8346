"""Issue 14, defect 7: list_accounts must not hold the event loop. With 200,001 accounts in the
memory store, a pattern that matches nothing used to be one scan of every name in a single loop
turn (160-180 ms of CPU here); now a literal prefix narrows the sorted index, and a scan that
remains runs in slices of ~0.5 ms with the loop free between them. A canary task that counts
its turns shows it: before the fix it got none while the scan ran."""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import pytest
import pytest_asyncio

from core import ChatService, HashCost, MemoryStore
from core.session import Session

pytestmark = pytest.mark.timeout(120)
ACCOUNTS = 200_001
T = TypeVar("T")


@pytest.fixture(scope="module")
def store() -> MemoryStore:
    """200,000 accounts plus "viewer", built once for the module."""

    async def fill() -> MemoryStore:
        store = MemoryStore()
        for i in range(ACCOUNTS - 1):  # straight into the store: no hashing needed
            await store.create_account(f"user{i:06d}", "not-a-hash", 0)
        await ChatService(store, hash_cost=HashCost.LOW).signup(Session(), "viewer", "pw-12345678")
        return store

    return asyncio.run(fill())


@pytest_asyncio.fixture
async def crowded(store: MemoryStore) -> AsyncIterator[tuple[ChatService, Session]]:
    service = ChatService(store, hash_cost=HashCost.LOW)
    viewer = service.open_session("127.0.0.1")
    await service.login(viewer, "viewer", "pw-12345678")
    yield service, viewer
    await service.shutdown()


async def with_canary(work: Awaitable[T]) -> tuple[T, int]:
    """Run ``work``; also how many loop turns another task got meanwhile."""
    turns = 0
    done = False

    async def canary() -> None:
        nonlocal turns
        for _ in range(1_000_000):  # (bounded: far more turns than any scan here needs)
            if done:
                return
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(canary())
    await asyncio.sleep(0)
    turns = 0
    try:
        result = await work
    finally:
        done = True
        await task
    return result, turns


@pytest.mark.parametrize("pattern", ["*zzz*", "?zz*", "*_9"])
async def test_a_search_that_matches_nothing_leaves_the_loop_to_others(
    crowded: tuple[ChatService, Session], pattern: str
) -> None:
    service, viewer = crowded
    page, turns = await with_canary(service.list_accounts(viewer, pattern))
    assert page.usernames == () and not page.more
    assert turns >= 20  # the scan of 200,001 names paused for others (it took 0 turns before)


async def test_a_literal_prefix_is_found_in_the_index_not_by_a_scan(
    crowded: tuple[ChatService, Session],
) -> None:
    service, viewer = crowded
    page, turns = await with_canary(service.list_accounts(viewer, "nomatch*"))
    assert page.usernames == () and turns <= 1
    page = await service.list_accounts(viewer, "user19999?", limit=5)
    assert page.usernames == tuple(f"user19999{i}" for i in range(5)) and page.more


async def test_a_pattern_no_username_can_match_is_answered_without_the_store(
    crowded: tuple[ChatService, Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, viewer = crowded

    async def no_scan(*args: object) -> list[str]:
        raise AssertionError("the store was asked")

    monkeypatch.setattr(service.store, "list_accounts", no_scan)
    for pattern in ["*ä*", "* *", "[ax]*", "?" * 33, "user 1*"]:
        page = await service.list_accounts(viewer, pattern)
        assert page.usernames == () and not page.more


async def test_sliced_scans_page_exactly_like_one_scan() -> None:
    store = MemoryStore()
    names = sorted(f"{c}{i:04d}" for c in "abc" for i in range(3000))
    for name in names:
        await store.create_account(name, "h", 0)
    for pattern in ["*1?3", "b*7*", "?0*9", "c2*"]:
        expected = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        found: list[str] = []
        after = ""
        for _ in range(len(expected) + 1):  # (bounded: one page per name at most)
            page = await store.list_accounts(pattern, after, 7)
            found += page
            if len(page) < 7:
                break
            after = page[-1]
        assert found == expected, pattern
