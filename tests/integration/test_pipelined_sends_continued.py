"""Pipelined SENDs on the custom server when the store's send waits in a coroutine of its own
(PostgreSQL's ``add_message``; here SqliteStore with its ``add_message_future`` hidden): the
connection is a plain ``_ServerConnection`` whose waiting sends go on as ``Continuation``s in
its ``SendPipeline`` (transports/_pipeline.py), not the staged path that
test_pipelined_sends.py exercises on SQLite. Every test of that file runs again here, on this
path: replies and stored messages in request order, a failing send answered in its place, a
failed commit, a session ending, a deletion and a vanished client with sends in flight, and
the bounds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from core import ChatService, HashCost, SqliteStore
from tests.integration.test_pipelined_sends import (  # (collected again: run on this store)
    codec_name,
    test_a_failed_commit_ends_the_connection_after_the_replies_before_it,
    test_a_failing_send_answers_in_its_place_and_the_rest_go_on,
    test_a_vanished_client_leaves_a_prefix_and_no_bytes_held,
    test_bounded_pipelines_keep_order_and_give_their_bytes_back,
    test_deleting_the_account_answers_the_sends_before_it,
    test_replies_and_stored_messages_keep_request_order,
    test_the_session_ends_with_sends_in_flight_answered_and_stored,
)


class _WaitingStore(SqliteStore):
    """A SqliteStore whose sends wait in ``add_message`` (a coroutine), as PostgreSQL's do."""

    @property
    def add_message_future(self) -> Any:
        raise AttributeError("add_message_future")  # (getattr's default: not staged)


@pytest_asyncio.fixture
async def service(tmp_path: Path) -> AsyncIterator[ChatService]:
    service = ChatService(_WaitingStore(tmp_path / "chat.db"), hash_cost=HashCost.LOW)
    assert getattr(service.store, "add_message_future", None) is None  # (not staged)
    yield service
    await service.shutdown()


__all__ = [
    "codec_name",
    "service",
    "test_a_failed_commit_ends_the_connection_after_the_replies_before_it",
    "test_a_failing_send_answers_in_its_place_and_the_rest_go_on",
    "test_a_vanished_client_leaves_a_prefix_and_no_bytes_held",
    "test_bounded_pipelines_keep_order_and_give_their_bytes_back",
    "test_deleting_the_account_answers_the_sends_before_it",
    "test_replies_and_stored_messages_keep_request_order",
    "test_the_session_ends_with_sends_in_flight_answered_and_stored",
]
