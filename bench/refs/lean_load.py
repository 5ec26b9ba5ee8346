"""lean_load: the lean pipelined load generator of the transports that speak the custom
protocol's varint frames (custom, and protobuf-tcp: the same frames with protobuf bodies).

Why. The bench's chat load rows were driven by the product's ChatClient: a task, a future and
the client's rules per send, ~35-45 µs of client CPU each, and at most ``connections x depth``
(4 x 8) sends outstanding. That measured the client and Little's law (32 in flight ÷ the
latency), not the server: custom/memory read 17 k sends/s with the server's vCPU a third idle,
where a raw pipelined client drives the same server past 50 k/s. This generator follows the
echo generator's design (bench/loadgen.py):

* each sender is its own connection; the set-up (HELLO, SIGNUP) goes through the transport's
  own sans-IO codec, after which the connection is driven raw: the SEND frame of every
  request id is encoded once (``frames[rid]``, by the same codec, so the bytes are the
  product client's), and requests due in one loop turn leave as one ``write`` per connection;
* the server answers one connection's requests in order (custom PROTOCOL.md section 8), so a
  reply is matched by popping the connection's FIFO of (intended, sent, request id); its
  request id is checked against the one due, and a reply's frame is read no further than its
  opcode and request id (a varint frame walk, no decoding of bodies); frames with request
  id 0 (pushes, a connection-level ERROR) answer no request;
* answered request ids are reused before new ones (a stack of free ids), so a connection
  with at most ``d`` requests outstanding uses ids 1..d, as the ChatClient would;
* timings go to plain lists (bench/loadgen.py ``Timings``), histograms after the step.

Closed loop keeps ``depth`` SENDs outstanding per connection, by default the server's own
pipeline (``ServerLimits.sends_in_flight``: 32 SENDs per connection are served together, one
durable write for the lot with the SQLite store): enough in flight that the server, not the
round trip, sets the rate. Open loop is bench/load.py's contract (intended times fixed
beforehand, latency from the intended time, queueing and service apart).

Its own ceiling (bench/loadgen_scene.py) is measured against ``null_echo``, which writes back
whatever arrives: the generator then reads its own SEND frames back and takes an echoed SEND
as the reply (``reply_opcode``), so it walks the same frames and does the same bookkeeping per
reply as against a chat server, with a responder cheaper than any server (its frames are the
SEND's ~50 bytes, not SENT's ~13: if anything the ceiling is underestimated).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, Unpack, cast

from bench.load import DRAIN_POLL_S, LoadResult, OpenLoopSchedule
from bench.loadgen import Limits, Timings, close, drive_step, open_loop, to_result
from transports.custom import (
    NEED_DATA,
    Connection,
    Deliver,
    Error,
    Hello,
    MessagesGone,
    Opcode,
    ReadMark,
    Role,
    Send,
    SentCopy,
    SignedUp,
    Signup,
    Welcome,
)
from transports.custom._fields import read_varint
from transports.custom._wire import MAX_BODY, MAX_FRAME, MAX_RECIPIENTS, VARINT32_BYTES

#: The reply to a SEND, and the opcode of an ERROR (both the same in custom and protobuf-tcp).
SENT = int(Opcode.SENT)
ERROR = int(Opcode.ERROR)
SEND = int(Opcode.SEND)
#: A set-up reply (WELCOME, SIGNED_UP) slower than this is a hung server, not a slow one.
SETUP_TIMEOUT_S = 10.0
#: After this many request-level errors a closed-loop connection stops sending (an error per
#: request would otherwise be measured as throughput).
MAX_ERRORS = 100
#: Closed loop: how long the last replies may take once the window is over.
CLOSED_DRAIN_S = 2.0
#: Pushes a sender may receive (it is its own user with one session: none, in practice).
_PUSHES = (Deliver, SentCopy, ReadMark, MessagesGone)

Codec = Callable[[Role], Connection]


class Sender(Protocol):
    """What the drivers below (warm-up, closed and open loop) need of one lean connection:
    :class:`LeanFrames` here, bench/refs/lean_ws.py's ``LeanWs`` for the websocket transport.
    ``frames[rid]`` is the encoded request with request id ``rid`` (``frame_id()`` hands out a
    free id, encoding its frame the first time); ``pending`` the FIFO of (intended, sent,
    request id) outstanding; ``refill``: closed loop, send an answered id's frame again."""

    timings: Timings
    pending: collections.deque[tuple[int, int, int]]
    free: list[int]
    frames: list[bytes]
    transport: asyncio.Transport | None
    lost: str | None
    errors: int
    first_error: str | None
    refill: bool

    def frame_id(self) -> int: ...


def framed_codec(transport: str) -> Codec | None:
    """The codec class of ``transport`` if it speaks the custom protocol's varint frames
    (its package's ``Connection`` is the custom codec or a subclass), else None. Asked of the
    registry, so a new transport in those frames gets the lean generator without a list here."""
    from transports import registry

    entry = registry.BY_NAME.get(transport)
    if entry is None or not entry.wire:
        return None
    codec = getattr(entry.load(), "Connection", None)
    if isinstance(codec, type) and issubclass(codec, Connection):
        return cast(Codec, codec)
    return None


def offline_codec(codec: Codec = Connection) -> Connection:
    """A client codec past its handshake without a server: HELLO and WELCOME exchanged with a
    server codec in memory. What encodes the SEND frames of the ceiling's run (null_echo
    knows no handshake)."""
    client, server = codec(Role.CLIENT), codec(Role.SERVER)
    server.receive_data(client.send(Hello(client.versions[0], client.versions[-1])))
    server.next_event()
    version = server.version or client.versions[-1]
    welcome = Welcome(version, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS)
    client.receive_data(server.send(welcome))
    event = client.next_event()
    if not isinstance(event, Welcome):
        raise RuntimeError(f"offline handshake: expected WELCOME, got {event!r}")
    return client


class LeanFrames(asyncio.Protocol):
    """One connection: set-up through the codec, then SEND frames by request id and a FIFO of
    (intended, sent, request id) per outstanding request."""

    def __init__(self, timings: Timings, codec: Connection, reply_opcode: int = SENT) -> None:
        self.timings = timings
        self.codec = codec  # encodes every frame; decodes only during the set-up
        self.reply_opcode = reply_opcode
        self.pending: collections.deque[tuple[int, int, int]] = collections.deque()
        self.free: list[int] = []  # answered request ids, reused before new ones
        self.frames: list[bytes] = [b""]  # frames[rid]: the SEND frame with that request id
        self.recipients: tuple[str, ...] = ()
        self.body = ""
        self.transport: asyncio.Transport | None = None
        self.rest = b""  # the start of a frame not yet complete
        self.lost: str | None = None
        self.errors = 0  # requests answered by an ERROR (or another opcode than the reply)
        self.first_error: str | None = None
        #: Closed loop: on each reply, send the same request id's frame again at once.
        self.refill = False
        self._setup: asyncio.Future[Any] | None = None  # set-up: the reply awaited
        self._raw = False  # set-up over: replies are walked raw

    # -- set-up ------------------------------------------------------------------------------
    async def call(self, request: Any, reply: type) -> Any:
        """Set-up only: one request through the codec, its reply (pushes are skipped)."""
        assert self.transport is not None
        self._setup = asyncio.get_running_loop().create_future()
        self.transport.write(self.codec.send(request))
        try:
            event = await asyncio.wait_for(self._setup, SETUP_TIMEOUT_S)
        finally:
            self._setup = None
        if isinstance(event, Error):
            raise ConnectionError(f"the server refused: code 0x{event.code:02X} {event.message}")
        if not isinstance(event, reply):
            raise ConnectionError(f"expected {reply.__name__}, the server answered {event!r}")
        return event

    def sending(self, recipients: tuple[str, ...], body: str) -> None:
        """From now on the replies are walked raw, and requests are SENDs of ``body``."""
        self.recipients, self.body = recipients, body
        self._raw = True

    def frame_id(self) -> int:
        """A free request id (an answered one if any, else the next new one, whose frame is
        encoded now)."""
        if self.free:
            return self.free.pop()
        rid = len(self.frames)
        self.frames.append(self.codec.send(Send(rid, self.recipients, self.body)))
        return rid

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.lost or (
            f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
        )
        if self._setup is not None and not self._setup.done():
            self._setup.set_exception(ConnectionError(self.lost))

    def data_received(self, data: bytes) -> None:
        if not self._raw:
            self._setup_data(data)
            return
        if self.rest:
            data = self.rest + data
        size = len(data)
        pos = 0
        now = time.perf_counter_ns()
        t = self.timings
        pending, free, frames = self.pending, self.free, self.frames
        reply_opcode, refill = self.reply_opcode, self.refill
        out: list[bytes] = []
        replies = 0
        while pos < size:
            length = data[pos]
            start = pos + 1
            if length >= 0x80:
                length, start = read_varint(data, pos, size, VARINT32_BYTES)  # type: ignore[arg-type]
                if start < 0:
                    break
            end = start + length
            if end > size:
                break
            opcode = data[start]
            rid = data[start + 1]
            if rid >= 0x80:
                rid, _ = read_varint(data, start + 1, end, VARINT32_BYTES)  # type: ignore[arg-type]
            pos = end
            if rid == 0:  # a push, or an ERROR that answers no request (the end follows)
                if opcode == ERROR:
                    self.lost = self.lost or "the server ended the connection with an ERROR"
                continue
            if not pending:
                self._broken(f"a reply with request id {rid} while none was outstanding")
                return
            intended, sent, expected = pending.popleft()
            if rid != expected:
                self._broken(f"reply to request id {rid} where {expected} was due (out of order)")
                return
            replies += 1
            if opcode == reply_opcode:
                t.latency.append(now - intended)
                t.service.append(now - sent)
            else:
                self.errors += 1
                if self.first_error is None:
                    self.first_error = f"opcode 0x{opcode:02X} answered request id {rid}"
                if self.errors > MAX_ERRORS:
                    refill = self.refill = False
            if refill:
                pending.append((now, now, rid))
                out.append(frames[rid])
            else:
                free.append(rid)
        self.rest = data[pos:] if pos < size else b""
        if replies:
            t.last_done_ns = now
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _setup_data(self, data: bytes) -> None:
        codec = self.codec
        codec.receive_data(data)
        while (event := codec.next_event()) is not NEED_DATA:
            waiter = self._setup
            if isinstance(event, _PUSHES) or waiter is None or waiter.done():
                continue
            waiter.set_result(event)

    def _broken(self, why: str) -> None:
        """The reply stream cannot be trusted: the step ends with this error."""
        self.lost = self.lost or why
        self.refill = False
        if self.transport is not None:
            self.transport.close()


# -- connecting ------------------------------------------------------------------------------
async def connect_senders(
    address: tuple[str, int],
    codec: Codec,
    names: list[str],
    password: str,
    recipients: tuple[str, ...],
    body: str,
    timings: Timings,
) -> list[LeanFrames]:
    """One connection per name: HELLO, SIGNUP, then raw SENDs of ``body`` to ``recipients``."""
    loop = asyncio.get_running_loop()
    conns: list[LeanFrames] = []
    try:
        for name in names:
            _, conn = await loop.create_connection(
                lambda: LeanFrames(timings, codec(Role.CLIENT)), address[0], address[1]
            )
            conns.append(conn)
            versions = conn.codec.versions
            await conn.call(Hello(versions[0], versions[-1]), Welcome)
            await conn.call(Signup(1, name, password), SignedUp)
            conn.sending(recipients, body)
    except BaseException:
        close(conns)
        raise
    return conns


async def connect_null(
    address: tuple[str, int], connections: int, body: str, timings: Timings
) -> list[LeanFrames]:
    """Connections to ``null_echo`` (the ceiling): no set-up; an echoed SEND is the reply."""
    loop = asyncio.get_running_loop()
    conns: list[LeanFrames] = []
    for _ in range(connections):
        _, conn = await loop.create_connection(
            lambda: LeanFrames(timings, offline_codec(), reply_opcode=SEND),
            address[0],
            address[1],
        )
        conns.append(conn)
        conn.sending(("r",), body)
    return conns


# -- driving ---------------------------------------------------------------------------------
def _first_error(conns: Sequence[Sender]) -> str | None:
    return next((c.lost for c in conns if c.lost), None) or next(
        (c.first_error for c in conns if c.first_error), None
    )


def _finish(result: LoadResult, conns: Sequence[Sender]) -> LoadResult:
    """Request errors, and the requests a lost connection left unanswered, as errors."""
    result.errors += sum(c.errors for c in conns)
    result.errors += sum(len(c.pending) for c in conns if c.lost)
    result.first_error = result.first_error or _first_error(conns)
    return result


async def warm_up(conns: Sequence[Sender], calls: int) -> None:
    """``calls`` untimed SENDs spread over the connections, all at once; then the timings are
    cleared. Raises if the replies do not come within ``SETUP_TIMEOUT_S``."""
    timings = conns[0].timings
    per = max(1, -(-calls // len(conns)))
    for conn in conns:
        rids = [conn.frame_id() for _ in range(per)]
        conn.pending.extend((0, 0, rid) for rid in rids)
        assert conn.transport is not None
        conn.transport.write(b"".join(conn.frames[rid] for rid in rids))
    until = time.perf_counter_ns() + int(SETUP_TIMEOUT_S * 1e9)
    while any(c.pending for c in conns):
        lost = _first_error(conns)
        if lost or time.perf_counter_ns() > until:
            raise ConnectionError(f"warm-up: {lost or 'no replies within the time limit'}")
        await asyncio.sleep(DRAIN_POLL_S)
    timings.latency.clear()
    timings.service.clear()
    timings.lag.clear()
    for conn in conns:
        conn.errors, conn.first_error = 0, None


async def frames_closed_loop(conns: Sequence[Sender], depth: int, duration_s: float) -> LoadResult:
    """Each connection keeps ``depth`` SENDs outstanding for ``duration_s``."""
    timings = conns[0].timings
    start = time.perf_counter_ns()
    for conn in conns:
        conn.refill = True
        rids = [conn.frame_id() for _ in range(depth)]
        conn.pending.extend((start, start, rid) for rid in rids)
        assert conn.transport is not None
        conn.transport.write(b"".join(conn.frames[rid] for rid in rids))
    await asyncio.sleep(duration_s)
    # A loop busy with replies wakes from the sleep late: the window is what the clock says.
    stopped = time.perf_counter_ns()
    for conn in conns:
        conn.refill = False
    done = len(timings.latency)
    drain_until = time.perf_counter_ns() + int(CLOSED_DRAIN_S * 1e9)
    while any(c.pending and not c.lost for c in conns):
        if time.perf_counter_ns() > drain_until:
            break
        await asyncio.sleep(DRAIN_POLL_S)
    # Only what completed inside the window counts (the drain lets the sockets go quiet).
    timings.latency, timings.service = timings.latency[:done], timings.service[:done]
    result = to_result(timings, start, done, done)
    result.last_done_ns = stopped
    return _finish(result, conns)


async def frames_open_loop(
    conns: Sequence[Sender], schedule: OpenLoopSchedule, **limits: Unpack[Limits]
) -> LoadResult:
    """Open loop at ``schedule``: due SENDs leave in one write per connection per turn."""
    timings = conns[0].timings
    n = len(conns)
    lag = timings.lag
    outs: list[list[bytes]] = [[] for _ in conns]

    def dispatch(i: int, due: int, now: int) -> None:
        for j in range(i, due):
            c = j % n
            conn = conns[c]
            intended = schedule.intended_ns(j)
            rid = conn.free.pop() if conn.free else conn.frame_id()
            conn.pending.append((intended, now, rid))
            outs[c].append(conn.frames[rid])
            lag.append(now - intended)
        for conn, out in zip(conns, outs, strict=True):
            if out and conn.transport is not None:
                conn.transport.write(b"".join(out))
                out.clear()

    result = await open_loop(
        conns,
        schedule,
        dispatch,
        # (an ERROR answers a request too: it is no longer outstanding)
        answered=lambda: len(timings.latency) + sum(c.errors for c in conns),
        **limits,
    )
    return _finish(result, conns)


# -- one load step ---------------------------------------------------------------------------
def closed_depth(job: dict[str, Any]) -> int:
    """SENDs outstanding per connection in a closed-loop step: the job's ``lean_depth``, else
    the server's own pipeline (``ServerLimits.sends_in_flight``), never less than ``depth``."""
    from transports._guard import ServerLimits

    return int(job.get("lean_depth") or max(job.get("depth", 1), ServerLimits().sends_in_flight))


#: Connects a lean generator's connections to an echo target: (address, timings) -> senders.
ConnectEcho = Callable[[tuple[str, int], Timings], Awaitable[Sequence[Sender]]]
#: Connects and signs up a lean generator's senders to a chat server: (address, their names,
#: their password, the recipient, timings) -> senders.
ConnectChat = Callable[[tuple[str, int], list[str], str, str, Timings], Awaitable[Sequence[Sender]]]


async def run_lean_step(
    job: dict[str, Any], connect_echo: ConnectEcho, connect_chat: ConnectChat
) -> tuple[LoadResult, int | None, float | None, dict[str, float | None], str | None]:
    """One load step of a lean generator (this one, bench/refs/lean_ws.py's): (result,
    requests in flight, offered rate, CPU, the clean-up's error). A chat target gets fresh
    senders (``connect_chat``) and one offline recipient (deleted afterwards, with every
    message of the step still pending to it); an echo target (kind "echo") gets
    ``connect_echo``'s connections, without a set-up."""
    from bench.endpoints import PASSWORD, CpuMeter, chat_target

    spec = job["target"]
    address = (spec["address"][0], int(spec["address"][1]))
    timings = Timings()
    target = None
    recipient = ""
    if spec["kind"] == "echo":
        conns = await connect_echo(address, timings)
    else:
        recipient = f"{job['prefix']}r"
        target = chat_target(spec)
        try:
            await target.discard(await target.user(recipient))  # signed up, then offline
            names = [f"{job['prefix']}s{c}" for c in range(job["connections"])]
            conns = await connect_chat(address, names, PASSWORD, recipient, timings)
        except BaseException:
            await target.aclose()
            raise
    cleanup_error = None
    try:
        await warm_up(conns, max(job.get("warmup", 0), len(conns)))
        meter = CpuMeter(int(spec["server_pid"]))
        cpu: dict[str, float | None] = {}
        timings.on_done = lambda: cpu.update(meter.elapsed())
        result, inflight, offered = await drive_step(
            job,
            len(conns),
            functools.partial(frames_closed_loop, conns),
            functools.partial(frames_open_loop, conns),
            depth_of=closed_depth,
        )
    finally:
        close(conns)
        if target is not None:
            try:
                owner = await target.user(recipient, signup=False)
                await owner.delete_account(recipient, PASSWORD)
            except Exception as exc:
                cleanup_error = f"{type(exc).__name__}: {exc}"
            finally:
                await target.aclose()
    return result, inflight, offered, cpu, cleanup_error


async def run_frames(
    job: dict[str, Any],
) -> tuple[LoadResult, int | None, float | None, dict[str, float | None], str | None]:
    """One load step of this generator (``run_lean_step``); ``null_echo`` is driven without
    a set-up."""
    spec = job["target"]
    codec = framed_codec(spec["transport"]) if spec["kind"] != "echo" else None
    if spec["kind"] != "echo" and codec is None:
        raise ValueError(f"{spec['transport']} does not speak the custom protocol's frames")

    async def echo(address: tuple[str, int], timings: Timings) -> Sequence[Sender]:
        return await connect_null(address, job["connections"], job["body"], timings)

    async def chat(
        address: tuple[str, int], names: list[str], password: str, recipient: str, t: Timings
    ) -> Sequence[Sender]:
        assert codec is not None
        return await connect_senders(address, codec, names, password, (recipient,), job["body"], t)

    return await run_lean_step(job, echo, chat)


__all__ = [
    "ConnectChat",
    "ConnectEcho",
    "LeanFrames",
    "Sender",
    "closed_depth",
    "connect_null",
    "connect_senders",
    "framed_codec",
    "frames_closed_loop",
    "frames_open_loop",
    "offline_codec",
    "run_frames",
    "run_lean_step",
    "warm_up",
]
