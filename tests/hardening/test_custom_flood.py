"""Issue 14 defect 1 on the TCP transports: an ACK flood froze the whole server.

ACK has no reply, so backpressure never stops a client that pipelines ACKs, and the server
handled every frame of a read burst before the loop moved on (on uvloop, libuv reads a busy
socket up to 32 times in a row: 8 MiB of frames). A real server process (uvloop) is
flooded on one connection while a canary on another sends a PING: the canary must be
answered again and again while the flood is still being worked through, not after it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from transports.custom import NEED_DATA, Ack, Connection, Hello, Ping, Pong, Role, Signup
from wirechat.launch import ServerProcess

pytestmark = pytest.mark.timeout(120)
WAIT = 60.0  # the most the flood may take to be worked through, even on a busy machine
ACKS = 1000  # of 1,024 ids each: ~2 MB (the issue froze the loop for 8 s with 3 MB)


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    # (an in-memory store: each ACK costs CPU, not disk waits, as a flood on a fast disk would)
    # (ACKs unpaced: what is tried here is the fair turn, not ``ack_ids_per_second``)
    unpaced = ["--ack-ids-per-second", "1e12"]
    process = ServerProcess(["custom"], ":memory:", extra_args=unpaced).start()
    try:
        yield process
    finally:
        process.stop()


def read_until(sock: socket.socket, codec: Connection, wanted: type) -> object:
    """Events from a blocking socket until one of type ``wanted``."""
    while True:
        while (event := codec.next_event()) is not NEED_DATA:
            if isinstance(event, wanted):
                return event
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        codec.receive_data(data)


class Flood(threading.Thread):
    """Signs up, then sends ACKS pipelined ACKs and a PING behind them; ``answered`` is set
    when that PING's PONG arrives, i.e. when the server has handled the whole flood."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.started_flood = threading.Event()
        self.answered = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(self.address, timeout=WAIT) as sock:
                codec = Connection(Role.CLIENT)
                sock.sendall(codec.send(Hello()) + codec.send(Signup(1, "flooder", "pw-12345678")))
                ids = tuple(range(1_000_000, 1_001_024))  # never pending: pure cost
                frame = codec.send(Ack(ids))
                burst = frame * 100
                for i in range(ACKS // 100):
                    sock.sendall(burst)
                    if i == 3:
                        self.started_flood.set()
                sock.sendall(codec.send(Ping(2, b"end of flood")))
                assert read_until(sock, codec, Pong) == Pong(2, b"end of flood")
                self.answered.set()
        except BaseException as exc:  # (reported by the test)
            self.error = exc
            self.started_flood.set()


async def test_an_ack_flood_does_not_keep_other_connections_waiting(
    server: ServerProcess,
) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(*server.addresses["custom"])
    canary = Connection(Role.CLIENT)
    writer.write(canary.send(Hello()))
    canary.receive_data(await reader.read(100))  # WELCOME
    canary.next_event()

    flood = Flood(server.addresses["custom"])
    flood.start()
    await loop.run_in_executor(None, flood.started_flood.wait, WAIT)
    assert flood.error is None, flood.error
    assert not flood.answered.is_set(), "the flood was handled too fast to test anything"

    # The canary pings, one at a time, for as long as the flood is being worked through.
    answered = 0
    async with asyncio.timeout(WAIT):
        while not flood.answered.is_set() and flood.is_alive():
            writer.write(canary.send(Ping(answered + 1, b"canary")))
            while (event := canary.next_event()) is NEED_DATA:
                canary.receive_data(await reader.read(100))
            assert event == Pong(answered + 1, b"canary")
            answered += 1
            await asyncio.sleep(0.005)
    await loop.run_in_executor(None, flood.join, WAIT)
    assert flood.error is None, flood.error
    assert flood.answered.is_set()
    # Before, the canary's first PING waited for the whole flood (one or two round trips,
    # racing the flood's end); now the flood yields the loop at every turn.
    assert answered >= 10, f"only {answered} canary round trips during the flood"
    writer.close()
