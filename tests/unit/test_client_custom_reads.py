"""The custom client's read path (issue 8): a read that ends with a reply returns at once,
without asking the codec again; every frame of a read that holds more is still dispatched,
and a frame split across reads is completed by the next one.

No server: the client's asyncio transport is a recorder (test_client_custom_writes), and the
server's frames come from a server-role codec, handed to ``data_received`` in chosen pieces.
"""

from __future__ import annotations

import asyncio

from tests.unit.test_client_custom_writes import _logged_in
from transports.custom import Deliver, Sent


async def test_two_replies_and_a_push_in_one_read_are_all_handed_over() -> None:
    client, custom, _, server = await _logged_in()
    first = asyncio.ensure_future(client.send(["bob"], "one"))
    second = asyncio.ensure_future(client.send(["bob"], "two"))
    await asyncio.sleep(0)
    read = (
        server.send(Sent(1, 41, 1_700_000_000_000))
        + server.send(Sent(2, 42, 1_700_000_000_001))
        + server.send(Deliver(7, 1_700_000_000_002, "bob", "hello"))
    )
    custom.data_received(read)
    assert (await first).message_id == 41
    assert (await second).message_id == 42
    pushed = await client.next_message(5.0)
    assert (pushed.message_id, pushed.body) == (7, "hello"), f"pushed: {pushed!r}"
    await client.close()


async def test_a_reply_then_part_of_the_next_is_completed_by_the_next_read() -> None:
    client, custom, _, server = await _logged_in()
    first = asyncio.ensure_future(client.send(["bob"], "one"))
    second = asyncio.ensure_future(client.send(["bob"], "two"))
    await asyncio.sleep(0)
    tail = server.send(Sent(2, 52, 1_700_000_000_001))
    custom.data_received(server.send(Sent(1, 51, 1_700_000_000_000)) + tail[:3])
    assert (await first).message_id == 51
    assert not second.done(), "the second reply is not complete yet"
    custom.data_received(tail[3:])
    assert (await second).message_id == 52
    await client.close()


async def test_a_push_after_the_reply_in_one_read_is_delivered() -> None:
    client, custom, _, server = await _logged_in()
    sending = asyncio.ensure_future(client.send(["bob"], "one"))
    await asyncio.sleep(0)
    custom.data_received(
        server.send(Sent(1, 61, 1_700_000_000_000))
        + server.send(Deliver(8, 1_700_000_000_002, "bob", "after"))
    )
    assert (await sending).message_id == 61
    pushed = await client.next_message(5.0)
    assert pushed.message_id == 8, f"pushed: {pushed!r}"
    await client.close()
