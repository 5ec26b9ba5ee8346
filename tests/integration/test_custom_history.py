"""The custom server's version 2 duties that the conformance suite cannot see: pages cut to fit
one frame (PROTOCOL.md section 7.12), long MESSAGES_GONE lists split into frames (7.17), and a
version 1 ChatClient on the same server seeing no notices (section 5). In-process server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from core import ChatClient, ChatService, HashCost, SqliteStore
from core.types import Delivery, MessagesDeleted
from transports.custom import Connection, CustomTransport, Role, open_client, start_server
from transports.custom._server import CustomServer
from transports.custom._wire import MAX_DELETE_IDS

pytestmark = pytest.mark.timeout(60)
WAIT = 5.0


@pytest_asyncio.fixture
async def service() -> AsyncIterator[ChatService]:
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    yield service
    await service.shutdown()


@pytest_asyncio.fixture
async def server(service: ChatService) -> AsyncIterator[CustomServer]:
    server = await start_server(service, "127.0.0.1", 0)
    yield server
    await server.close()


class _Version1(Connection):
    """A codec that speaks only version 1, as a client of the first edition does."""

    versions: tuple[int, ...] = (1,)


def v1_codec(role: Role) -> Connection:
    return _Version1(role)


async def test_a_page_too_big_for_one_frame_is_cut_and_paging_still_reaches_everything(
    server: CustomServer,
) -> None:
    async with open_client(server.address) as me:
        await me.signup("big", "pw-secret-123")
        bodies = [str(i) * 60_000 for i in range(3)]  # three messages of 60 KB: 180 KB
        for body in bodies:
            await me.send(["big"], body)
        first = await me.read_history([], limit=3)
        assert len(first.messages) < 3 and first.more  # cut to fit, and says so
        seen = [m.body for m in first.messages]
        before = first.messages[-1].message_id
        for _ in range(5):  # bounded
            page = await me.read_history([], before_id=before, limit=3)
            seen += [m.body for m in page.messages]
            if not page.more:
                break
            before = page.messages[-1].message_id
        assert seen == bodies[::-1]
        listed = await me.list_conversations()
        assert [c.last_message.body for c in listed.conversations] == [bodies[-1]]


async def test_a_long_list_of_gone_ids_arrives_whole_in_several_frames(
    server: CustomServer, service: ChatService
) -> None:
    sender = service.open_session()
    await service.signup(sender, "leaver", "pw-secret-123")
    reader = open_client(server.address, auto_ack=False)
    await reader.connect()
    try:
        await reader.signup("stayer", "pw-secret-123")
        count = MAX_DELETE_IDS + 7
        sent = [(await service.send(sender, ["stayer"], f"m{i}")).message_id for i in range(count)]
        # purges the unacked messages
        await service.delete_account(sender, "leaver", "pw-secret-123")
        gone: list[int] = []
        frames = 0
        for _ in range(2 * count + 10):  # bounded: the deliveries, then the notices
            event = await reader.next_event(WAIT)
            if isinstance(event, MessagesDeleted):
                frames += 1
                gone += event.message_ids
                if len(gone) >= count:
                    break
            else:
                assert isinstance(event, Delivery)
        assert sorted(gone) == sent and frames == 2
    finally:
        await reader.close()


async def test_a_version_1_client_gets_deliveries_and_no_notices(server: CustomServer) -> None:
    old = ChatClient(_transport_v1(server.address), auto_ack=False)
    async with open_client(server.address) as alice, open_client(server.address) as phone:
        await old.connect()
        try:
            assert old.transport.welcome.version == 1  # type: ignore[attr-defined]
            await alice.signup("alice1", "pw-secret-123")
            await phone.login("alice1", "pw-secret-123")
            await old.login("alice1", "pw-secret-123")
            sent = await alice.send(["alice1", "bob1"], "to myself")  # bob1 does not exist
            assert sent.conversation_id != 0
            copy = await phone.next_event(WAIT)
            assert isinstance(copy, Delivery) and copy.participants == ()
            got = await old.next_event(WAIT)
            assert isinstance(got, Delivery) and got.body == "to myself"
            assert (got.participants, got.conversation_id) == ((), 0)  # not on a v1 wire
            await alice.delete_messages([sent.message_id])
            await alice.mark_read(sent.conversation_id, sent.message_id)
            with pytest.raises(Exception, match="not part of protocol version 1"):
                await old.list_conversations()
            assert await old.transport.ping(b"x") == b"x"  # type: ignore[attr-defined]
            with pytest.raises(TimeoutError):  # no MESSAGES_GONE, no READ_MARK reached it
                await old.next_event(0.3)
        finally:
            await old.close()


def _transport_v1(address: tuple[str, int]) -> CustomTransport:
    return CustomTransport(address, codec=v1_codec)


async def test_the_client_offers_every_version_its_codec_speaks(server: CustomServer) -> None:
    async with open_client(server.address) as client:
        assert client.transport.welcome.version == 4  # type: ignore[attr-defined]
