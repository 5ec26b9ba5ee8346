"""lean_population_ws: lean sessions of the websocket transport for the population scene
(bench/population.py, issue 10 items 3-4).

Why. The population's sessions were the product's ChatClient, all of them in one worker
process on one vCPU: a reader task, a queue and the client's rules per session, a task and
a future per request, and one ACK request per delivery. At 1,000 sends/s to 1-10 recipients
that vCPU was the bottleneck, so the rows showed the clients, not the server. These sessions
do the same work on the wire with none of that:

* one ``asyncio.Protocol`` per session (bench/refs/lean_ws.py's ``LeanWs``, whose set-up this
  reuses: the opening handshake through the ``websockets`` library's sans-IO
  ``ClientProtocol``, the SIGNUP through the transport's own request encoder and reply
  decoder); then the connection is read raw;
* a request (SEND, LIST_ACCOUNTS) is the transport's encoder's text (the product client's)
  in a masked client frame from the same ``ClientProtocol`` (``send_text``, RFC 6455 section
  5.3); it returns a plain future, kept by request id and resolved from ``data_received``
  with the reply's ``ok`` members, or failed with the exception the product client raises
  for the reply's error code (transports/websocket/_messages.py ``error_for_code``), or with
  ConnectionError when the connection is lost. Several requests may be outstanding; replies
  are matched by id (CONTRACT.md section 7);
* every server text message is decoded once (``json.loads`` of the frame's payload); a
  ``deliver`` push calls ``on_push(body)`` and its id joins the ACK of that read: one ACK
  (request id 0, no reply when it succeeds: section 6.6) for every delivery one
  ``data_received`` brought, in at most 1024 ids an ACK. Other pushes are ignored (a new
  account has no other device: no ``sent``/``read`` push comes; a ``session_ended`` notice
  is followed by the close). Pings are answered with pongs (section 10), as LeanWs does;
* no task, queue or ChatClient per session; close-all sends each a close frame, waits
  (bounded) for the server to end the TCP connections, and aborts whatever is left.

A failed ACK (an error reply with id 0) is counted in ``ack_errors`` (the message in
``ack_error``); nobody waits for it.

Measured (2-vCPU AMD EPYC VM, server on vCPU 0 with the memory store, clients on vCPU 1 under
uvloop as in the bench's worker; 200 sessions, 2,000 sends to 5 recipients at 1,000/s, until
every push is in; 4 alternating rounds): client CPU 407 µs a send (median; 370-427) against
644 µs (600-761) with ChatClient and a reader task per session, 1.50-1.78x per round. Most of
what is left is the kernel and the loop: one read and one ACK write per delivery (a push
mostly comes alone). That holds with a dispatcher that sleeps between sends: bench/load.py's
``run_open_loop`` busy-polls whenever the next send is under ``SPIN_NS`` (1.2 ms) away, which
at 1,000 sends/s fills the vCPU whoever the sessions are (both rows read 100 %).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from websockets.protocol import State

from bench.loadgen import Timings
from bench.population_members import LOGIN_BATCH, OnPush, open_in_batches
from bench.refs.lean_ws import CHAT, LeanWs
from core import requests as rq
from core.limits import MAX_ACK_IDS
from transports.websocket._client_codec import encode_request
from transports.websocket._messages import PATH, SUBPROTOCOL, error_for_code

#: How long close-all waits for the server's side of the closing handshake.
CLOSE_TIMEOUT_S = 5.0
#: The request id of every ACK (a successful ACK has no reply; a failed one names it).
ACK_ID = 0
#: The request id of the sign-up; requests count up from the next one.
SIGNUP_ID = 1
#: The first byte of a final text frame (FIN, opcode 1): every reply and push.
_TEXT_FIN = 0x81


def split_frames(data: bytes) -> tuple[list[tuple[int, int, int]] | None, int]:
    """The complete server frames at the start of ``data``, each as (its first byte, where its
    payload starts, where it ends), and how many bytes they take; None for the frames if one
    is masked (a server's never are)."""
    frames: list[tuple[int, int, int]] = []
    size, pos = len(data), 0
    while size - pos >= 2:
        length = data[pos + 1]
        if length & 0x80:
            return None, pos
        head = 2 if length < 126 else 4 if length == 126 else 10  # RFC 6455 section 5.2
        if size - pos < head:
            break
        if head > 2:
            length = int.from_bytes(data[pos + 2 : pos + head], "big")
        end = pos + head + length
        if end > size:
            break
        frames.append((data[pos], pos + head, end))
        pos = end
    return frames, pos


class WsMember(LeanWs):
    """One logged-in session: requests by id, pushes acked per read."""

    def __init__(self, uri: str, on_push: OnPush) -> None:
        super().__init__(Timings(), CHAT, uri, SUBPROTOCOL)
        self.on_push = on_push
        self.waiting: dict[int, asyncio.Future[Any]] = {}  # request id -> its reply's future
        self.next_id = SIGNUP_ID + 1
        self.ack_errors = 0
        self.ack_error: str | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start_reading(self) -> None:
        """Set-up over: from now on frames are walked raw (LeanWs's switch)."""
        self._raw = True

    # -- requests ----------------------------------------------------------------------------
    def send(self, recipients: tuple[str, ...], body: str) -> asyncio.Future[Any]:
        """A SEND; the future resolves with the reply's ``ok`` members (message_id, ...)."""
        return self._request(rq.Send(recipients, body))

    def list_accounts(self, pattern: str, limit: int) -> asyncio.Future[Any]:
        """The first page of LIST_ACCOUNTS; resolves with ``{"usernames": [...], "more": ..}``."""
        return self._request(rq.ListAccounts(pattern, "", limit))

    def _request(self, request: rq.Request[Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            future.set_exception(ConnectionError(f"the session is gone: {self.lost or 'closed'}"))
            return future
        rid = self.next_id
        self.next_id = rid + 1
        self.waiting[rid] = future
        self._write_text(encode_request(rid, request))
        return future

    def _write_text(self, text: str) -> None:
        proto = self.proto
        proto.send_text(text.encode())
        assert self.transport is not None
        self.transport.write(b"".join(proto.data_to_send()))

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ConnectionError(f"the connection was lost: {self.lost}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self._raw:
            self._setup_data(data)
            return
        data = self.rest + data if self.rest else data
        frames, used = split_frames(data)
        if frames is None:
            self._broken("the server sent a masked frame")  # (RFC 6455 section 5.1)
            return
        acks: list[int] = []
        for first, start, end in frames:
            if first != _TEXT_FIN:
                if not self._control(first, data[start:end]):
                    return
            elif not self._message(data[start:end], acks):
                return
        self.rest = data[used:] if used < len(data) else b""
        if not acks or self.proto.state is not State.OPEN:  # (closing: no more requests)
            return
        for start in range(0, len(acks), MAX_ACK_IDS):
            ids = tuple(acks[start : start + MAX_ACK_IDS])
            self._write_text(encode_request(ACK_ID, rq.Ack(ids)))

    def _message(self, payload: bytes, acks: list[int]) -> bool:
        """One server text message; False if the stream cannot be trusted (connection closed)."""
        try:
            obj = json.loads(payload)
            push = obj.get("push")
            if push is None:
                self._reply(obj)
                return True
            if push != "deliver":
                return True  # sent copies, read marks, messages gone, notices: not counted
            body, message_id = obj["body"], obj["message_id"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._broken(f"an unreadable server message {payload[:80]!r}: {exc!r}")
            return False
        self.on_push(body)
        acks.append(message_id)
        return True

    def _reply(self, obj: dict[str, Any]) -> None:
        rid = obj["id"]
        future = self.waiting.pop(rid, None)
        if "ok" in obj:
            if future is not None and not future.done():
                future.set_result(obj["ok"])
            return
        error = obj["error"]
        code, message = str(error["code"]), str(error.get("message", ""))
        if future is not None:
            if not future.done():
                future.set_exception(error_for_code(code, message))
        elif rid == ACK_ID:
            self.ack_errors += 1
            self.ack_error = self.ack_error or f"{code}: {message}"

    # -- closing -----------------------------------------------------------------------------
    def start_closing(self) -> None:
        """A close frame (1000); the server answers it and ends the TCP connection."""
        if self.transport is None or self.transport.is_closing():
            return
        self.lost = self.lost or "closed by the client"
        if self.proto.state is not State.OPEN:  # (a close frame went already)
            return
        self.proto.send_close(1000)
        self.transport.write(b"".join(self.proto.data_to_send()))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def _close_all(members: Sequence[WsMember], timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close every member's connection: a close frame each, then at most ``timeout_s`` for
    the server to end the connections; those left are aborted."""
    for member in members:
        member.start_closing()
    open_ = [m.closed for m in members if not m.closed.done()]
    if open_:
        await asyncio.wait(open_, timeout=timeout_s)
    left = [m for m in members if not m.closed.done()]
    for member in left:
        member.abort()
    if left:  # abort reports connection_lost on the loop's next turn
        await asyncio.wait([m.closed for m in left], timeout=1.0)


async def _log_in_one(
    address: tuple[str, int], name: str, password: str, on_push: OnPush
) -> WsMember:
    host, port = address
    uri = f"ws://{host}:{port}{PATH}"
    loop = asyncio.get_running_loop()
    _, member = await loop.create_connection(lambda: WsMember(uri, on_push), host, port)
    try:
        await member.handshake()
        await member.call(SIGNUP_ID, rq.Signup(name, password))
    except BaseException:
        member.abort()
        raise
    member.start_reading()
    return member


async def log_in_ws(
    address: tuple[str, int],
    names: Sequence[str],
    password: str,
    on_push: OnPush,
    *,
    batch: int = LOGIN_BATCH,
) -> tuple[list[WsMember], Callable[[], Awaitable[None]]]:
    """Sign every name up (a new account each; ``batch`` sign-ups at once), one WebSocket
    connection per name, each reading its pushes; returns the sessions and an async close-all.
    If any sign-up fails, the sessions made so far are closed and its error raised."""
    members = await open_in_batches(
        names, lambda n: _log_in_one(address, n, password, on_push), _close_all, batch
    )

    async def close_all() -> None:
        await _close_all(members)

    return members, close_all


__all__ = [
    "ACK_ID",
    "CLOSE_TIMEOUT_S",
    "WsMember",
    "log_in_ws",
    "split_frames",
]
