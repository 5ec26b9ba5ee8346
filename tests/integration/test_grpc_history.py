"""History on both gRPC transports, in-process: what chat.proto says about pages beyond the
conformance suite. A page is cut at PAGE_BUDGET_BYTES (with ``more`` set) so that 64 KiB
messages never make a reply too large, paging on loses nothing, and a page's messages leave
out the participants and conversation they share with the page."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import ModuleType

import pytest

from core import ChatService, HashCost, SqliteStore, limits
from core.types import Delivery, HistoryPage
from tests.conftest import suite_guard
from transports.grpc import _convert, _wire
from transports.grpc import client as grpc_client
from transports.grpc import servicer as grpc_server
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc_stream import _client as stream_client
from transports.grpc_stream import _server as stream_server

WAIT = 10.0
BIG = "é" * (limits.MAX_BODY_BYTES // 2)  # a maximal body: 65,536 bytes of UTF-8
PER_PAGE = _wire.PAGE_BUDGET_BYTES // (limits.MAX_BODY_BYTES + 20)  # how many fit, roughly


def name() -> str:
    return "h" + uuid.uuid4().hex[:12]


@pytest.fixture
async def service() -> AsyncIterator[ChatService]:
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    yield service
    await service.store.close()


@pytest.fixture(params=["grpc", "grpc-stream"])
async def sides(
    request: pytest.FixtureRequest, service: ChatService
) -> AsyncIterator[tuple[ModuleType, tuple[str, int]]]:
    server_module, client_module = {
        "grpc": (grpc_server, grpc_client),
        "grpc-stream": (stream_server, stream_client),
    }[request.param]
    server = await server_module.start_server(service, "127.0.0.1", 0, guard=suite_guard())
    yield client_module, server.address
    await server.close()


async def test_a_page_of_big_messages_is_cut_to_fit_and_paging_on_loses_nothing(
    sides: tuple[ModuleType, tuple[str, int]],
) -> None:
    module, address = sides
    alice, bob = name(), name()
    total = PER_PAGE + 5
    async with module.open_client(address) as sender, module.open_client(address) as reader:
        await sender.signup(alice, "pw-secret-1")
        await reader.signup(bob, "pw-secret-1")
        sent = [(await sender.send([bob], f"{i:03d}{BIG[3:]}")).message_id for i in range(total)]
        pages = []
        before = 0
        for _ in range(5):  # bounded: two pages are expected
            page = await reader.read_history([alice], before, limits.MAX_PAGE_SIZE)
            pages.append(page)
            if not page.more:
                break
            before = page.messages[-1].message_id
        assert len(pages) == 2
        assert 0 < len(pages[0].messages) < total and pages[0].more  # cut below `limit`
        got = [m.message_id for page in pages for m in page.messages]
        assert got == sorted(sent, reverse=True)  # newest first, nothing lost or repeated
        first = pages[0].messages[0]
        assert first.body == f"{total - 1:03d}{BIG[3:]}"
        assert (first.participants, first.conversation_id) == ((alice,), pages[0].conversation_id)


async def test_a_page_of_conversations_with_big_last_messages_is_cut_too(
    sides: tuple[ModuleType, tuple[str, int]],
) -> None:
    module, address = sides
    me, others = name(), [name() for _ in range(PER_PAGE + 2)]
    async with module.open_client(address) as client:
        for other in others:
            async with module.open_client(address) as friend:
                await friend.signup(other, "pw-secret-1")
        await client.signup(me, "pw-secret-1")
        for other in others:
            await client.send([other], BIG)
        first = await client.list_conversations(0, limits.MAX_PAGE_SIZE)
        assert 0 < len(first.conversations) < len(others) and first.more
        rest = await client.list_conversations(first.conversations[-1].last_message.message_id)
        listed = [c.participants for c in (*first.conversations, *rest.conversations)]
        assert listed == [(other,) for other in reversed(others)] and not rest.more
        last = first.conversations[0]
        assert last.last_message.participants == last.participants
        assert last.last_message.conversation_id == last.conversation_id


def test_a_page_leaves_out_what_it_shares_with_its_messages() -> None:
    """The saving chat.proto promises, per message of a 1:1 history page (7+ bytes)."""
    messages = tuple(
        Delivery(1000 + i, "alice", "x" * 32, 1_700_000_000_000, ("alice",), False, 77)
        for i in range(50)
    )
    page = HistoryPage(77, ("alice",), messages, True)
    wire = _convert.history_reply(page)
    assert all(m.conversation_id == 0 and not m.participants for m in wire.messages)
    full = pb.ReadHistoryReply(
        conversation_id=77, participants=["alice"], more=True,
        messages=[_convert.delivery_pb(m) for m in messages],
    )  # fmt: skip
    assert full.ByteSize() - wire.ByteSize() == 50 * (7 + 2)
    assert _convert.history_of(pb.ReadHistoryReply.FromString(wire.SerializeToString())) == page
