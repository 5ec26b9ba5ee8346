"""The grpc-stream client's write path against a fake call (transports/grpc_stream/_client.py):
request() starts the write on its own stack (no writer task to wake, issue 10), one write is in
flight at a time, each write's completion starts the next in order, a caller that stops waiting
never cancels a write, a write that fails with the call stops writing quietly, and close() half-
closes only after what was queued."""

from __future__ import annotations

import asyncio
from typing import Any

from core import requests as rq
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc_stream._client import GrpcStreamTransport


class FakeCall:
    """grpc.aio's StreamStreamCall as the writes see it: one write in flight, each waiting for
    the test to let it complete."""

    def __init__(self) -> None:
        self.written: list[int] = []  # the request ids, in the order the writes started
        self.pending: asyncio.Future[None] | None = None
        self.half_closed = False

    async def write(self, data: bytes) -> None:
        assert self.pending is None, "two writes in flight"
        assert not self.half_closed, "a write after the half-close"
        self.written.append(pb.ClientMessage.FromString(data).request_id)
        self.pending = asyncio.get_running_loop().create_future()
        try:
            await self.pending
        finally:
            self.pending = None

    async def done_writing(self) -> None:
        assert self.pending is None, "half-closed with a write in flight"
        self.half_closed = True

    def finish_write(self, error: BaseException | None = None) -> None:
        assert self.pending is not None, "no write in flight"
        if error is None:
            self.pending.set_result(None)
        else:
            self.pending.set_exception(error)


def transport_on(call: FakeCall) -> GrpcStreamTransport:
    transport = GrpcStreamTransport(("127.0.0.1", 1))
    transport._loop = asyncio.get_running_loop()
    transport._call = call
    return transport


def send(transport: GrpcStreamTransport, text: str) -> Any:
    return transport.request(rq.Send(("bob",), text))


async def until(condition: Any) -> None:
    """Loop turns until ``condition()`` holds (a done callback runs a turn later)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_request_starts_its_write_at_once_and_queues_behind_one_in_flight() -> None:
    call = FakeCall()
    transport = transport_on(call)
    send(transport, "one")
    assert call.written == [1]  # on request()'s own stack: no task had a turn
    send(transport, "two")
    send(transport, "three")
    assert call.written == [1]  # one write in flight; the others wait, in order
    call.finish_write()
    await until(lambda: call.written == [1, 2])
    call.finish_write()
    await until(lambda: call.written == [1, 2, 3])
    call.finish_write()
    await until(lambda: call.pending is None)
    send(transport, "four")  # idle again: started at once
    assert call.written == [1, 2, 3, 4]


async def test_a_caller_that_stops_waiting_does_not_cancel_its_write() -> None:
    call = FakeCall()
    transport = transport_on(call)
    first, second = send(transport, "one"), send(transport, "two")
    first.cancel()
    second.cancel()
    assert call.pending is not None and not call.pending.cancelled()
    call.finish_write()
    await until(lambda: call.written == [1, 2])  # the queued one goes out too
    assert transport._waiting.keys() == {1, 2}  # their ids stay taken until their replies


async def test_a_write_failing_with_the_call_stops_writing_quietly() -> None:
    call = FakeCall()
    transport = transport_on(call)
    send(transport, "one")
    send(transport, "two")
    call.finish_write(asyncio.InvalidStateError("the RPC is already finished"))
    await until(lambda: transport._writing is None)
    send(transport, "three")  # nothing more is written; the reader tells the callers why
    await asyncio.sleep(0)
    assert call.written == [1]


async def test_the_half_close_waits_for_what_is_queued() -> None:
    call = FakeCall()
    transport = transport_on(call)
    send(transport, "one")
    send(transport, "two")
    transport._flushed = asyncio.get_running_loop().create_future()  # what close() asks
    call.finish_write()
    await until(lambda: call.written == [1, 2])
    assert not call.half_closed
    call.finish_write()
    await asyncio.wait_for(transport._flushed, 10)
    assert call.half_closed
