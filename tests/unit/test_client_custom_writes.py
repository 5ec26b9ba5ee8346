"""The custom client's write path (issue 8): the lone request goes straight to the transport,
but never ahead of a frame already waiting in the outbox (an ACK of this loop iteration).

No server: the client's asyncio transport is a recorder, and the server's side of the
handshake and replies comes from a server-role codec.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core import requests as rq
from core.client import ChatClient
from transports.custom import (
    NEED_DATA,
    Connection,
    Hello,
    Role,
    Send,
    Sent,
    SignedUp,
    Welcome,
    open_client,
)
from transports.custom._events import Ack


class _Recorder:
    """An asyncio transport that keeps every write as one entry (a ``writelines`` batch too)."""

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append([bytes(data)])

    def writelines(self, frames: list[bytes]) -> None:
        self.writes.append([bytes(f) for f in frames])

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _logged_in() -> tuple[ChatClient, Any, _Recorder, Connection]:
    """A client past HELLO/WELCOME and a signup, its wire a recorder; and the server's codec."""
    client = open_client(("127.0.0.1", 9))
    custom: Any = client.transport
    recorder = _Recorder()

    async def fake_open(loop: object, host: str, port: int) -> None:
        custom.connection_made(recorder)

    custom._open = fake_open
    server = Connection(Role.SERVER)
    connecting = asyncio.ensure_future(client.connect())
    await asyncio.sleep(0)
    for frame in recorder.writes.pop():
        server.receive_data(frame)
    hello = server.next_event()
    assert isinstance(hello, Hello)
    custom.data_received(server.send(Welcome(hello.max_version, 1 << 20, 65536, 256)))
    await connecting
    signing_up = asyncio.ensure_future(client.signup("alice", "pw-secret-1"))
    await asyncio.sleep(0)
    for frame in recorder.writes.pop():
        server.receive_data(frame)
    server.next_event()
    custom.data_received(server.send(SignedUp(1)))
    await signing_up
    assert client.logged_in
    return client, custom, recorder, server


def _events(server: Connection, frames: list[bytes]) -> list[Any]:
    for frame in frames:
        server.receive_data(frame)
    out = []
    while (event := server.next_event()) is not NEED_DATA:
        out.append(event)
    return out


async def test_a_lone_send_is_one_write_and_gets_its_result() -> None:
    client, custom, recorder, server = await _logged_in()
    sending = asyncio.ensure_future(client.send(["bob"], "hi"))
    await asyncio.sleep(0)
    (batch,) = recorder.writes  # written at once, alone
    assert _events(server, batch) == [Send(1, ("bob",), "hi")]
    custom.data_received(server.send(Sent(1, 42, 1_700_000_000_000, (), 3)))
    result = await sending
    assert (result.message_id, result.conversation_id) == (42, 3)
    await client.close()


async def test_a_send_never_overtakes_a_waiting_ack() -> None:
    client, custom, recorder, server = await _logged_in()
    await custom.request(rq.Ack((7,)))  # queued until the end of this loop iteration
    assert recorder.writes == [] and not custom._outbox.idle
    # The send runs in this same loop iteration, up to its wait for the reply (a task
    # would start only after the outbox's flush).
    sending = client.send(["bob"], "hi")
    sending.send(None)
    await asyncio.sleep(0)  # the outbox's flush
    frames = [frame for batch in recorder.writes for frame in batch]
    assert _events(server, frames) == [Ack((7,)), Send(1, ("bob",), "hi")]
    assert custom._outbox.idle  # flushed: the next lone request goes straight out again
    custom.data_received(server.send(Sent(1, 43, 1_700_000_000_000)))
    try:
        sending.send(None)
    except StopIteration as done:
        assert done.value.message_id == 43
    else:
        raise AssertionError("the send did not finish with its reply")
    recorder.writes.clear()
    again = asyncio.ensure_future(client.send(["bob"], "again"))
    await asyncio.sleep(0)
    assert len(recorder.writes) == 1
    custom.data_received(server.send(Sent(1, 44, 1_700_000_000_000)))
    assert (await again).message_id == 44
    await client.close()
