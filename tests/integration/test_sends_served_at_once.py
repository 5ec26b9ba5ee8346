"""SENDs on the custom server over a store that never waits to add (the in-memory store): the
connection serves each one on the stack of ``data_received`` through ``ChatService.send_now``,
with no coroutine (issue 10). The pipelining tests of test_pipelined_sends.py that hold for
any store run again here, on this path: a failing send answered in its place, a session that
ends with sends queued behind it, a client that vanishes mid-batch, the bounds. And a bug in the
store's add ends the connection after the replies before it, as it does on the other paths,
with nothing stored for it (each SENT means stored: Rule 9). Both codecs of the driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from core import ChatService, HashCost
from core.memory_store import MemoryStore
from tests.integration.test_pipelined_sends import (  # (collected again: run on this store)
    bob_and_alice,
    codec_name,
    pending_bodies,
    test_a_failing_send_answers_in_its_place_and_the_rest_go_on,
    test_a_vanished_client_leaves_a_prefix_and_no_bytes_held,
    test_bounded_pipelines_keep_order_and_give_their_bytes_back,
    test_the_session_ends_with_sends_in_flight_answered_and_stored,
)
from transports.custom import Error, ErrorCode, Send, Sent

pytestmark = pytest.mark.timeout(60)


@pytest_asyncio.fixture
async def service() -> AsyncIterator[ChatService]:
    service = ChatService(MemoryStore(), hash_cost=HashCost.LOW)
    assert service.send_now is not None  # (the path under test)
    yield service
    await service.shutdown()


async def test_a_bug_in_the_stores_add_ends_the_connection_after_the_replies_before_it(
    codec_name: str,
) -> None:
    store = MemoryStore()
    add_message_now = store.add_message_now

    def poisoned(sender_id: int, body: str, now_ms: int, names: Sequence[str]) -> object:
        if body == "poison":
            raise RuntimeError("a bug in the store")
        return add_message_now(sender_id, body, now_ms, names)

    store.add_message_now = poisoned  # type: ignore[method-assign,assignment]
    service = ChatService(store, hash_cost=HashCost.LOW)
    assert service.send_now is not None
    try:
        async with bob_and_alice(service, codec_name) as (server, alice):
            sends = [Send(i + 2, ("bob",), "poison" if i == 5 else f"m{i}") for i in range(10)]
            alice.write(sends)
            events = await alice.read()  # until the server closes

            *answered, last = events
            assert (type(last), last.request_id, last.code) == (Error, 0, ErrorCode.INTERNAL)
            assert [type(e) for e in answered] == [Sent] * 5
            assert [e.request_id for e in answered] == [s.request_id for s in sends[:5]]
            assert await pending_bodies(server, codec_name, "bob") == [s.body for s in sends[:5]]
    finally:
        await service.shutdown()


__all__ = [
    "codec_name",
    "service",
    "test_a_bug_in_the_stores_add_ends_the_connection_after_the_replies_before_it",
    "test_a_failing_send_answers_in_its_place_and_the_rest_go_on",
    "test_a_vanished_client_leaves_a_prefix_and_no_bytes_held",
    "test_bounded_pipelines_keep_order_and_give_their_bytes_back",
    "test_the_session_ends_with_sends_in_flight_answered_and_stored",
]
