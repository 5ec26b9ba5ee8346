"""ChatClient.send, written out for speed (issue 8), keeps every client rule of ``_call``.

The transport here is a fake that records the requests it is given and answers each with what
the test queued, so each rule is shown exactly: what reaches the transport, what a reply does
to the client, what a cancelled send leaves behind.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core import ChatClient
from core import requests as rq
from core.errors import Forbidden, InvalidArgument, NotLoggedIn, SessionClosed
from core.types import SendResult


class _Recorder:
    """A ClientTransport answering each request with the next queued reply (a value, or an
    exception to raise); with none queued the reply never comes (the caller waits)."""

    def __init__(self) -> None:
        self.requests: list[rq.Request[Any]] = []
        self.replies: list[object] = []
        self.closed = False

    async def connect(self, events: object) -> None:
        return None

    def request(self, request: rq.Request[Any]) -> asyncio.Future[Any]:
        self.requests.append(request)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.replies:
            reply = self.replies.pop(0)
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        return future

    async def close(self) -> None:
        self.closed = True


async def _logged_in(transport: _Recorder) -> ChatClient:
    client = ChatClient(transport)
    await client.connect()
    client._logged_in = True  # as after a login (no server here)
    return client


async def test_the_transport_gets_the_request_and_the_caller_its_result() -> None:
    transport = _Recorder()
    client = await _logged_in(transport)
    result = SendResult(7, 1_700_000_000_000, ("ghost",), 3)
    transport.replies.append(result)
    assert await client.send(["bob", "ghost"], "hello") is result
    (request,) = transport.requests
    assert type(request) is rq.Send
    assert request == rq.Send(("bob", "ghost"), "hello")  # a list arrives as a tuple
    assert isinstance(request.recipients, tuple)
    assert client.logged_in and client.closed_reason is None  # a SEND changes no session


async def test_a_domain_error_is_raised_and_leaves_the_session() -> None:
    transport = _Recorder()
    client = await _logged_in(transport)
    transport.replies.append(Forbidden("not allowed"))
    with pytest.raises(Forbidden):
        await client.send(["nobody"], "hi")
    assert client.logged_in and client.closed_reason is None
    transport.replies.append(SendResult(8, 1))
    assert (await client.send(["bob"], "again")).message_id == 8


async def test_a_session_closed_reply_ends_the_session() -> None:
    transport = _Recorder()
    client = await _logged_in(transport)
    transport.replies.append(SessionClosed("session ended: account deleted"))
    with pytest.raises(SessionClosed):
        await client.send(["bob"], "hi")
    assert not client.logged_in
    assert client.closed_reason == "account deleted"
    with pytest.raises(SessionClosed):  # rule 1 first, before any pre-check
        await client.send([], "hi")
    assert len(transport.requests) == 1  # nothing more reached the transport


async def test_a_cancelled_send_keeps_the_client() -> None:
    """Unlike a cancelled login, a cancelled send leaves the session as it was (its
    message may or may not be stored, which a resend with the same body cannot tell)."""
    transport = _Recorder()
    client = await _logged_in(transport)
    task = asyncio.ensure_future(client.send(["bob"], "hi"))  # no reply queued: it waits
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not transport.closed and client.logged_in
    transport.replies.append(SendResult(9, 1))
    assert (await client.send(["bob"], "hi")).message_id == 9


async def test_the_checks_come_in_the_rules_order() -> None:
    transport = _Recorder()
    client = ChatClient(transport)
    with pytest.raises(ConnectionError):  # never connected
        await client.send(["bob"], "hi")
    await client.connect()
    with pytest.raises(NotLoggedIn):  # no session, and nothing to send: no session first
        await client.send([], "hi")
    client._logged_in = True
    with pytest.raises(InvalidArgument):
        await client.send((), "hi")
    assert transport.requests == []
