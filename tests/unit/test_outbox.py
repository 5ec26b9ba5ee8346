"""The shared write path (transports/_outbox.py) against a fake transport: how many writes a
burst, a loop iteration and a lone frame cost, the byte budget, and the stall timer."""

from __future__ import annotations

import asyncio

import pytest

from transports._outbox import Outbox

pytestmark = pytest.mark.timeout(10)


class FakeTransport:
    """Records every write call; its buffer holds what was written until ``drain``."""

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []  # one entry per write/writelines call
        self.buffer = 0
        self.high: int | None = None
        self.closing = False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high

    def get_write_buffer_size(self) -> int:
        return self.buffer

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        self.writes.append([data])
        self.buffer += len(data)

    def writelines(self, lines: list[bytes]) -> None:
        self.writes.append(list(lines))
        self.buffer += sum(map(len, lines))

    @property
    def sent(self) -> bytes:
        return b"".join(b"".join(call) for call in self.writes)


def make(**kw: object) -> tuple[Outbox, FakeTransport]:
    outbox = Outbox(asyncio.get_running_loop(), budget=1000, **kw)  # type: ignore[arg-type]
    transport = FakeTransport()
    outbox.attach(transport)  # type: ignore[arg-type]
    return outbox, transport


async def next_iteration() -> None:
    await asyncio.sleep(0)


async def test_attach_sets_the_budget_as_the_transports_high_water_mark() -> None:
    _, transport = make()
    assert transport.high == 1000


async def test_frames_of_one_loop_iteration_leave_in_one_write() -> None:
    outbox, transport = make()
    for frame in (b"a", b"bb", b"ccc"):
        outbox.write(frame)
    assert transport.writes == []  # not yet: the iteration is not over
    await next_iteration()
    assert transport.writes == [[b"a", b"bb", b"ccc"]]
    await next_iteration()
    assert len(transport.writes) == 1  # one flush per iteration, nothing written twice


async def test_a_burst_leaves_in_one_write_at_its_end() -> None:
    outbox, transport = make()
    outbox.begin_burst()
    outbox.write(b"one")
    outbox.write_now(b"two")  # inside a burst, "now" means with the burst
    assert transport.writes == []
    outbox.end_burst()
    assert transport.writes == [[b"one", b"two"]]
    await next_iteration()
    assert len(transport.writes) == 1


async def test_a_lone_frame_is_written_at_once_and_a_queued_one_keeps_its_place() -> None:
    outbox, transport = make()
    outbox.write_now(b"alone")
    assert transport.writes == [[b"alone"]]
    outbox.write(b"first")
    outbox.write_now(b"second")  # must not overtake "first"
    assert transport.writes == [[b"alone"]]
    await next_iteration()
    assert transport.sent == b"alonefirstsecond"


async def test_flush_at_bounds_what_waits() -> None:
    outbox, transport = make(flush_at=10)
    outbox.write(b"12345")
    assert transport.writes == []
    outbox.write(b"67890")  # 10 bytes wait: out at once
    assert transport.writes == [[b"12345", b"67890"]]
    assert outbox.buffered() == 10  # all of it now in the transport's buffer


async def test_buffered_counts_our_list_and_the_transports_buffer() -> None:
    outbox, transport = make()
    transport.buffer = 300
    outbox.write(b"x" * 20)
    assert outbox.buffered() == 320


async def test_nothing_is_written_to_a_closing_transport() -> None:
    outbox, transport = make()
    transport.closing = True
    outbox.write_now(b"late")
    outbox.write(b"later")
    await next_iteration()
    assert transport.writes == []


async def test_writable_returns_at_once_when_not_paused_and_flushes() -> None:
    outbox, transport = make()
    outbox.write(b"queued")
    assert await outbox.writable()
    assert transport.sent == b"queued"


async def test_waiting_writers_go_on_when_resumed() -> None:
    outbox, _ = make()
    outbox.pause()
    writers = [asyncio.create_task(outbox.writable()) for _ in range(3)]
    await next_iteration()
    assert not any(w.done() for w in writers)
    outbox.resume()
    assert await asyncio.gather(*writers) == [True, True, True]


async def test_release_wakes_waiting_writers_and_drops_what_is_queued() -> None:
    outbox, transport = make()
    outbox.pause()
    writer = asyncio.create_task(outbox.writable())
    await next_iteration()
    outbox.write(b"never")
    outbox.release()
    assert await writer
    await next_iteration()
    assert transport.writes == []


async def test_a_stalled_peer_makes_the_writer_give_up() -> None:
    outbox, transport = make(stall_timeout=0.2, stall_check=0.02)
    transport.buffer = 5000
    outbox.pause()
    assert not await outbox.writable()  # nothing left the buffer for 0.2 s


async def test_progress_restarts_the_stall_timer() -> None:
    outbox, transport = make(stall_timeout=0.2, stall_check=0.02)
    transport.buffer = 5000
    outbox.pause()
    writer = asyncio.create_task(outbox.writable())
    for _ in range(15):  # 0.45 s in all, well past one stall timeout, but always progressing
        await asyncio.sleep(0.03)
        transport.buffer -= 100
    assert not writer.done()
    outbox.resume()
    assert await writer


async def test_give_up_ends_the_wait_when_nothing_moves() -> None:
    outbox, transport = make(stall_timeout=60.0, stall_check=0.02)
    transport.buffer = 5000
    outbox.pause()
    gone = False
    writer = asyncio.create_task(outbox.writable(lambda: gone))
    await asyncio.sleep(0.1)
    assert not writer.done()
    gone = True
    async with asyncio.timeout(2):
        assert not await writer


async def test_without_a_stall_timeout_a_writer_waits_for_the_peer() -> None:
    outbox, _ = make()  # the client's outbox: no stall timer
    outbox.pause()
    writer = asyncio.create_task(outbox.writable())
    await asyncio.sleep(0.1)
    assert not writer.done()
    outbox.resume()
    assert await writer


async def test_a_cancelled_writer_leaves_no_waiter_behind() -> None:
    outbox, _ = make(stall_timeout=5.0, stall_check=0.02)
    outbox.pause()
    writer = asyncio.create_task(outbox.writable())
    await asyncio.sleep(0.05)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    outbox.resume()  # wakes no one, raises nothing
    assert outbox._waiters == []
