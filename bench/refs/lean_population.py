"""lean_population: the population scene's sessions on the transports that speak the custom
protocol's varint frames (custom, protobuf-tcp), lean enough that the server, not the
clients, limits the scene (bench/population_members.py says why).

One ``asyncio.Protocol`` per session over the transport's own sans-IO codec (its package's
``Connection``: the bytes are the product client's), and nothing else: no task per session,
no queue, no client rules. A request is encoded by the codec and written at once; its
caller gets a future, resolved when the codec decodes the reply with its request id
(several may be in flight: the open loop issues them on its schedule). A ``Deliver`` push
hands its body to ``on_push`` and its id to the read's one ACK (Rule 11: what one read
brought is acked together, in increasing id order, as the product client acks). Other
pushes (a sent copy, a read mark, messages gone) are read and dropped: nobody here shows
them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from bench.population_members import LOGIN_BATCH, OnPush, open_in_batches
from bench.refs.lean_load import SETUP_TIMEOUT_S
from transports.custom import (
    NEED_DATA,
    Accounts,
    Ack,
    Connection,
    Deliver,
    Error,
    Hello,
    ListAccounts,
    Role,
    Send,
    Sent,
    SignedUp,
    Signup,
    Welcome,
)

Codec = Callable[[Role], Connection]
#: How long close-all waits for the connections to go.
CLOSE_TIMEOUT_S = 5.0


class LeanSession(asyncio.Protocol):
    """One session: requests by request id, pushes to ``on_push``, acked per read."""

    def __init__(self, codec: Connection, on_push: OnPush) -> None:
        self.codec = codec
        self.on_push = on_push
        self.waiting: dict[int, tuple[asyncio.Future[Any], type]] = {}
        self.free: list[int] = []  # answered request ids, reused before new ones
        self.next_id = 1
        self.transport: asyncio.Transport | None = None
        self.welcome: asyncio.Future[Welcome] | None = None
        self.lost: str | None = None
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- requests --------------------------------------------------------------------------
    def send(self, recipients: tuple[str, ...], body: str) -> asyncio.Future[Any]:
        rid = self._take_id()
        return self._request(Send(rid, recipients, body), rid, Sent)

    def list_accounts(self, pattern: str, limit: int) -> asyncio.Future[Any]:
        rid = self._take_id()
        return self._request(ListAccounts(rid, pattern, "", limit), rid, Accounts)

    def signup(self, name: str, password: str) -> asyncio.Future[Any]:
        rid = self._take_id()
        return self._request(Signup(rid, name, password), rid, SignedUp)

    def _take_id(self) -> int:
        if self.free:
            return self.free.pop()
        rid = self.next_id
        self.next_id = rid + 1
        return rid

    def _request(self, request: Any, rid: int, reply: type) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.lost is not None or self.transport is None:
            future.set_exception(ConnectionError(self.lost or "not connected"))
            self.free.append(rid)
            return future
        self.waiting[rid] = (future, reply)
        self.transport.write(self.codec.send(request))
        return future

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.welcome = asyncio.get_running_loop().create_future()
        versions = self.codec.versions
        self.transport.write(self.codec.send(Hello(versions[0], versions[-1])))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.lost or (
            f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
        )
        error = ConnectionError(f"session lost: {self.lost}")
        waiting, self.waiting = self.waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                future.set_exception(error)
        if self.welcome is not None and not self.welcome.done():
            self.welcome.set_exception(error)
        if not self.gone.done():
            self.gone.set_result(None)

    def data_received(self, data: bytes) -> None:
        codec = self.codec
        next_event: Callable[[], Any] = codec.next_event  # (Any: read by class, not narrowed)
        try:
            codec.receive_data(data)
            acks: list[int] = []
            while (event := next_event()) is not NEED_DATA:
                kind = event.__class__
                if kind is Deliver:
                    self.on_push(event.body)
                    acks.append(event.message_id)
                    continue
                rid = getattr(event, "request_id", 0)
                entry = self.waiting.pop(rid, None) if rid else None
                if entry is None:
                    if kind is Welcome and self.welcome is not None and not self.welcome.done():
                        self.welcome.set_result(event)
                    elif kind is Error:  # a connection-level ERROR: the end follows
                        self.lost = self.lost or f"the server ended the session: {event.message}"
                    continue  # another push: read and dropped
                self.free.append(rid)
                future, reply = entry
                if future.done():
                    continue
                if kind is reply:
                    future.set_result(event)
                elif kind is Error:
                    future.set_exception(
                        RuntimeError(f"the server refused: code 0x{event.code:02X} {event.message}")
                    )
                else:
                    future.set_exception(
                        RuntimeError(f"expected {reply.__name__}, the server answered {event!r}")
                    )
            if acks and self.transport is not None:
                self.transport.write(codec.send(Ack(tuple(sorted(set(acks))))))
        except Exception as exc:  # a frame we cannot read: this session's end, not the run's
            self.lost = self.lost or f"unreadable reply: {exc!r}"
            if self.transport is not None:
                self.transport.close()


async def _open(
    address: tuple[str, int], codec: Codec, name: str, password: str, on_push: OnPush
) -> LeanSession:
    loop = asyncio.get_running_loop()
    _, session = await loop.create_connection(
        lambda: LeanSession(codec(Role.CLIENT), on_push), address[0], address[1]
    )
    try:
        assert session.welcome is not None
        await asyncio.wait_for(session.welcome, SETUP_TIMEOUT_S)
        await asyncio.wait_for(session.signup(name, password), SETUP_TIMEOUT_S)
    except BaseException:
        if session.transport is not None:
            session.transport.close()
        raise
    return session


async def close_all(sessions: Sequence[LeanSession]) -> None:
    """Close every connection and wait (bounded) until each is gone."""
    for session in sessions:
        if session.transport is not None:
            session.transport.close()
    if sessions:
        await asyncio.wait([s.gone for s in sessions], timeout=CLOSE_TIMEOUT_S)


async def log_in_frames(
    address: tuple[str, int],
    codec: Codec,
    names: Sequence[str],
    password: str,
    on_push: OnPush,
    *,
    batch: int = LOGIN_BATCH,
) -> tuple[list[LeanSession], Callable[[], Awaitable[None]]]:
    """Sign every name up (a new account each; ``batch`` at once), one connection per name,
    each reading its pushes into ``on_push``; the sessions, and an async close-all. If any
    sign-up fails, the sessions made so far are closed and its error raised."""
    sessions = await open_in_batches(
        names, lambda n: _open(address, codec, n, password, on_push), close_all, batch
    )

    async def aclose() -> None:
        await close_all(sessions)

    return sessions, aclose


__all__ = ["LeanSession", "close_all", "log_in_frames"]
