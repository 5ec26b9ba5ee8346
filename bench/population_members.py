"""The population's sessions: who logs in, sends, lists and reads pushes (bench/population.py).

Issue 10 item 3 asks for a load generator that is never the bottleneck. The population's
first sessions were the product's ChatClient, 1,000 of them in one worker process on one
vCPU: a task per session reading ``messages()``, an ACK request per read, the client's rules
on every call. At 1,000 sends/s (about 5,500 pushes and their acks a second) that process's
vCPU was 100 % busy on custom, protobuf-tcp, websocket and grpc-stream, so those rows showed
the clients as much as the server. Where a lean generator speaks the transport (the load
steps' own: bench/load.py ``lean_chat_engine``), the population uses a lean session of the
same design instead:

* ``FRAMES`` (custom, protobuf-tcp): bench/refs/lean_population.py, an ``asyncio.Protocol``
  per session over the transport's own sans-IO codec;
* ``WS`` (websocket): bench/refs/lean_population_ws.py, the same over RFC 6455 frames
  through the ``websockets`` library's sans-IO protocol;
* otherwise (the gRPC transports, whose server is the limit long before the clients; the
  in-process loopback) the product's ChatClient, as before.

Every kind does on the wire what the ChatClient does: it signs up, keeps its connection (its
push stream) open, acks each delivery it reads, and sends and lists by the transport's
contract. (The lean kinds ack what one read brought in one ACK, where the ChatClient acks
each delivery on its own; at the scene's rates a read mostly brings one push: 11,641 reads
for 12,000 pushes in helper leanpopws's run at 1,000 sends/s.) What a session reads of a
push is its body, handed to ``on_push`` the moment the frame is decoded (the ChatClient's
kind hands it over when ``messages()`` yields it). Each row of the population table names
its generator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

#: A delivered message's body, as its recipient read it (called once per delivery).
OnPush = Callable[[str], None]
#: Sessions signed up at once while the population logs in.
LOGIN_BATCH = 50

S = TypeVar("S")


class Member(Protocol):
    """One logged-in session of the population."""

    def send(self, recipients: tuple[str, ...], body: str) -> Awaitable[Any]:
        """SEND; the awaitable raises if the server refuses it or the session is lost."""
        ...

    def list_accounts(self, pattern: str, limit: int) -> Awaitable[Any]:
        """LIST_ACCOUNTS (one page); raises as ``send``."""
        ...


@dataclass
class Population:
    """The logged-in sessions, the generator that runs them (bench/load.py's engine names:
    ``client``, ``lean-frames``, ``lean-ws``), and how to log them all out."""

    members: Sequence[Member]
    engine: str
    aclose: Callable[[], Awaitable[None]]


def engine_for(target: dict[str, Any]) -> str:
    """The generator a population of ``target`` runs on: a lean one where the load steps have
    one for the transport, else the product's client."""
    from bench.load import CLIENT, FRAMES, WS, lean_chat_engine

    engine = lean_chat_engine({"frames": True, "target": target})
    return engine if engine in (FRAMES, WS) else CLIENT


async def log_in(
    target: dict[str, Any],
    names: Sequence[str],
    password: str,
    on_push: OnPush,
    *,
    engine: str | None = None,
) -> Population:
    """Sign every name up, one session each, reading its pushes into ``on_push``; on
    ``engine`` if given (``client``: the product's ChatClient, to compare), else on
    ``engine_for(target)``."""
    from bench.load import FRAMES, WS

    engine = engine or engine_for(target)
    if engine == FRAMES:
        from bench.refs.lean_load import framed_codec
        from bench.refs.lean_population import log_in_frames

        codec = framed_codec(target["transport"])
        assert codec is not None  # (engine_for asked the same)
        framed, aclose = await log_in_frames(
            tuple(target["address"]), codec, names, password, on_push
        )
        return Population(framed, engine, aclose)
    if engine == WS:
        from bench.refs.lean_population_ws import log_in_ws

        ws, aclose = await log_in_ws(tuple(target["address"]), names, password, on_push)
        return Population(ws, engine, aclose)
    return await _log_in_clients(target, names, on_push, engine)


async def open_in_batches(
    names: Sequence[str],
    open_one: Callable[[str], Awaitable[S]],
    close: Callable[[list[S]], Awaitable[None]],
    batch: int = LOGIN_BATCH,
) -> list[S]:
    """One session per name, ``batch`` opened at once (every kind of session logs in this
    way). If any fails, or the wait is cancelled, those opened are closed (``close``) and the
    first error raised."""
    opened: list[S] = []
    try:
        for start in range(0, len(names), batch):
            done = await asyncio.gather(
                *(open_one(name) for name in names[start : start + batch]),
                return_exceptions=True,
            )
            failed = next((r for r in done if isinstance(r, BaseException)), None)
            opened += [r for r in done if not isinstance(r, BaseException)]
            if failed is not None:
                raise failed
    except BaseException:
        await close(opened)
        raise
    return opened


async def _log_in_clients(
    target: dict[str, Any], names: Sequence[str], on_push: OnPush, engine: str
) -> Population:
    """The product's ChatClient, one per name, each with a task reading ``messages()`` (which
    acks each message as it hands it over, Rule 11)."""
    from bench.endpoints import chat_target

    chat = chat_target(target)
    readers: list[asyncio.Task[None]] = []

    async def read(client: Any) -> None:
        async for message in client.messages():
            on_push(message.body)

    async def aclose() -> None:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await chat.aclose()

    async def close(_: list[Any]) -> None:
        await aclose()  # (the target closes every client it opened)

    clients = await open_in_batches(names, lambda n: chat.user(n, auto_ack=True), close)
    readers += [asyncio.ensure_future(read(c)) for c in clients]
    return Population(clients, engine, aclose)


__all__ = [
    "LOGIN_BATCH",
    "Member",
    "OnPush",
    "Population",
    "engine_for",
    "log_in",
    "open_in_batches",
]
