"""The counting relay: exact counts, attribution by quiescence, the kernel cross-check.

These tests run the relay in front of servers started in the test itself (a TCP echo and a
bare grpc.aio echo service), so they check the measuring method independently of wirechat's
transports; tests/unit/test_bench_wire_sizes.py runs it against the real server.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter

import grpc
import pytest

from bench.wire_relay import C2S, S2C, CountingRelay, MeasurementError, settle
from transports.grpc._bytes import GrpcWireAccount
from transports.grpc._bytes import accounts as grpc_accounts


class RawAccount:
    """Every byte is payload; a frame boundary everywhere (for byte-stream tests)."""

    pending = 0

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter(payload=0, framing=0, headers=0, control=0)
        self.by_kind: Counter[str] = Counter()
        self.epoch = 0

    def receive_data(self, data: bytes) -> None:
        self.totals["payload"] += len(data)

    @classmethod
    def pair(cls) -> tuple[RawAccount, RawAccount]:
        return cls(), cls()


@pytest.fixture
async def echo_server():
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[:2]
    server.close()
    await server.wait_closed()


async def test_relay_counts_every_byte_each_way_and_the_kernel_agrees(echo_server) -> None:
    async with CountingRelay(echo_server, RawAccount.pair) as relay:
        reader, writer = await asyncio.open_connection(*relay.address)
        for size in (1, 1000, 200_000):
            before = relay.snapshot()
            writer.write(b"x" * size)
            await reader.readexactly(size)
            await settle([relay])
            after = relay.snapshot()
            assert (after[C2S] - before[C2S]).bytes == size
            assert (after[S2C] - before[S2C]).bytes == size
            assert (after[C2S] - before[C2S]).categories["payload"] == size
        (conn,) = relay.connections
        assert conn.kernel_checks >= 3  # each settle compared TCP_INFO with the relay's counts
        writer.close()
        await writer.wait_closed()


async def test_a_half_close_is_passed_on(echo_server) -> None:
    async with CountingRelay(echo_server, RawAccount.pair) as relay:
        reader, writer = await asyncio.open_connection(*relay.address)
        writer.write(b"bye")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"bye"  # echoed, then EOF
        writer.close()


async def test_settle_refuses_to_attribute_a_frame_cut_in_two(echo_server) -> None:
    class NeverComplete(RawAccount):
        pending = 1

    async with CountingRelay(echo_server, NeverComplete.pair) as relay:
        reader, writer = await asyncio.open_connection(*relay.address)
        writer.write(b"abc")
        await reader.readexactly(3)
        with pytest.raises(MeasurementError, match="incomplete frame"):
            await settle([relay], timeout=0.2)
        writer.close()


async def test_a_refused_upstream_closes_the_client() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    address = probe.sockets[0].getsockname()[:2]
    probe.close()
    await probe.wait_closed()  # nothing listens there now
    async with CountingRelay(address, RawAccount.pair) as relay:
        reader, writer = await asyncio.open_connection(*relay.address)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert relay.connections == []
        writer.close()


async def test_a_reset_by_the_server_reaches_the_client() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, not FIN

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    try:
        async with CountingRelay(server.sockets[0].getsockname()[:2], RawAccount.pair) as relay:
            reader, writer = await asyncio.open_connection(*relay.address)
            writer.write(b"x")
            try:
                assert await asyncio.wait_for(reader.read(), 5) == b""
            except ConnectionResetError:
                pass  # either way the client learns that the connection is gone
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


# -- real grpc-core bytes ------------------------------------------------------------------
def _identity(data: bytes) -> bytes:
    return data


@pytest.fixture
async def grpc_echo():
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "t.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo, _identity, _identity)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield ("127.0.0.1", port)
    await server.stop(None)


async def test_grpc_bytes_are_all_parsed_and_steady_calls_cost_less(grpc_echo) -> None:
    async with CountingRelay(grpc_echo, grpc_accounts) as relay:
        channel = grpc.aio.insecure_channel("{}:{}".format(*relay.address))
        call = channel.unary_unary("/t.Echo/Echo", _identity, _identity)
        await channel.channel_ready()
        await settle([relay])
        connect = relay.snapshot()
        assert connect[C2S].kinds["PREFACE"] == 24
        assert connect[C2S].bytes == connect[C2S].categories["control"]

        samples = []
        for call_number in range(1, 7):
            relay.begin(call_number)
            before = relay.snapshot()
            assert await call(b"y" * 32) == b"y" * 32
            await settle([relay])
            after = relay.snapshot()
            samples.append({d: after[d] - before[d] for d in (C2S, S2C)})
        for sample in samples:
            for count in sample.values():
                assert count.bytes == count.parsed  # nothing unparsed, nothing double-counted
                assert count.categories["payload"] == 32
                assert count.categories["framing"] == 9 + 5  # one DATA frame, one message
        first, steady = samples[0], samples[-1]
        # HPACK: the first call's headers fill the dynamic table; later calls index it.
        assert first[C2S].categories["headers"] > 3 * steady[C2S].categories["headers"]

        # grpc-core's BDP estimator sends a PING on a timer (100 ms at first, growing) after
        # data has flowed; the peer answers PING_ACK and may widen its window. Those late
        # frames are the connection's frames only (never a call's: no headline counts them),
        # and once no data flows the connection falls silent: nothing chatters on its own
        # that quiescence could misattribute.
        relay.begin(100)  # no call: anything that arrives now was caused by an earlier one
        before = relay.snapshot()
        await settle([relay], quiet=1.0)
        late = {d: relay.snapshot()[d] - before[d] for d in (C2S, S2C)}
        for count in late.values():
            assert set(count.kinds) <= GrpcWireAccount.CONNECTION_KINDS
        before = relay.snapshot()
        await asyncio.sleep(0.3)
        assert relay.snapshot()[C2S].bytes == before[C2S].bytes
        assert relay.snapshot()[S2C].bytes == before[S2C].bytes
        await channel.close()
