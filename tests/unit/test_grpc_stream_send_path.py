"""The grpc-stream server's send path, spelled out for speed (issue 10): the reply set field by
field in place is the SendReply chat.proto defines, and the turn its writers take (``_Turn``,
which replaced asyncio.Lock) hands the right to write to one writer at a time, in arrival
order, and is never stranded by a writer cancelled while it waits."""

from __future__ import annotations

import asyncio

import pytest

from core.types import SendResult
from transports.grpc import _convert as cv
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc_stream._server import _Turn


@pytest.mark.parametrize(
    "result",
    [
        SendResult(2**40, 1_700_000_000_123, (), 9),
        SendResult(5, 1_700_000_000_123, ("ghost", "nobody"), 3),
        SendResult(0, 0, ("ghost",), 0),  # every recipient unknown: still a SendReply
    ],
)
def test_a_reply_set_in_place_is_the_send_reply(result: SendResult) -> None:
    expected = pb.ServerMessage(
        request_id=7,
        sent=pb.SendReply(
            message_id=result.message_id,
            sent_at_ms=result.sent_at_ms,
            unknown_recipients=result.unknown_recipients,
            conversation_id=result.conversation_id,
        ),
    )
    reply = pb.ServerMessage(request_id=7)
    cv.fill_send_reply(reply.sent, result)
    assert reply.WhichOneof("message") == "sent"
    assert reply == expected
    assert pb.ServerMessage.FromString(reply.SerializeToString()) == expected
    assert cv.send_reply(result) == expected.sent


async def _take(turn: _Turn) -> None:
    if turn.held:
        await turn.wait()
    else:
        turn.held = True


async def _until_waiting(turn: _Turn, count: int) -> None:
    """Until ``count`` writers wait for the turn (each needs a loop turn to start)."""
    deadline = asyncio.get_running_loop().time() + 10
    for _ in range(100_000):
        if len(turn.waiters) >= count:
            return
        assert asyncio.get_running_loop().time() < deadline, "the writers never waited"
        await asyncio.sleep(0)
    raise AssertionError("the writers never waited")


async def test_writers_take_turns_in_arrival_order() -> None:
    turn = _Turn()
    await _take(turn)  # the first writer holds it
    order: list[int] = []

    async def writer(n: int) -> None:
        await _take(turn)
        order.append(n)
        await asyncio.sleep(0)  # (a write that waits: nobody else may write meanwhile)
        assert order[-1] == n
        turn.release()

    tasks = [asyncio.create_task(writer(n)) for n in range(4)]
    await _until_waiting(turn, 4)
    turn.release()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
    assert order == [0, 1, 2, 3]
    assert not turn.held


async def test_a_writer_cancelled_while_waiting_strands_no_one() -> None:
    turn = _Turn()
    await _take(turn)
    waiting = asyncio.create_task(_take(turn))
    after = asyncio.create_task(_take(turn))
    await _until_waiting(turn, 2)
    waiting.cancel()  # gone before its turn: skipped
    with pytest.raises(asyncio.CancelledError):
        await waiting
    turn.release()
    await asyncio.wait_for(after, timeout=10)
    assert turn.held  # the next writer has it
    turn.release()
    assert not turn.held


async def test_a_writer_cancelled_as_its_turn_came_hands_it_on() -> None:
    turn = _Turn()
    await _take(turn)
    first = asyncio.create_task(_take(turn))
    second = asyncio.create_task(_take(turn))
    await _until_waiting(turn, 2)
    turn.release()  # handed to the first ...
    first.cancel()  # ... cancelled before it ran: it passes the turn on
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, timeout=10)
    assert turn.held
    turn.release()
    assert not turn.held
