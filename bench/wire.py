"""Bytes on the wire per operation, counted the same way for every transport.

Method
    The client under test (a real ``ChatClient`` from the transport registry, in this process)
    connects to a counting relay (``bench/wire_relay.py``): a TCP proxy on 127.0.0.1 in front
    of the real server (another process), which counts every byte it forwards in each direction
    as it reads it and feeds the same bytes to a per-direction parser that splits them into
    whole frames and classifies each byte. What is counted is exactly the TCP payload each side
    wrote (for gRPC: the HTTP/2 preface, SETTINGS, WINDOW_UPDATE, PING, HPACK-compressed HEADERS
    and DATA frames). TCP/IP headers, SYN/FIN and pure ACK segments are not counted: they
    depend on segmentation, not on the protocol. One relay per client.

Attribution (which operation a byte belongs to)
    Operations run one at a time. Each is numbered; before it starts, its relays must be quiet
    and we snapshot them; we await the operation (so its response has crossed the relay), then
    settle: wait until, at one moment, every relay of the operation has carried no byte for
    QUIET (30 ms, counted from the operation's completion at the earliest), each parser sits on
    a frame boundary (no partial frame buffered), and the kernel's own TCP counters
    (TCP_INFO bytes_acked/bytes_received) of every relay socket equal the relay's counts
    (nothing in flight: this is the cross-check a packet capture would give). The bytes between
    the snapshots are the operation's. Then two corrections, so that every byte lands on
    exactly one operation, the one that caused it:
    * bytes a relay carries between operations are added to its previous operation;
    * gRPC flow-control frames written late are moved to the operation whose DATA caused them
      (``bench/h2frames.py``, "Late flow-control frames"): a WINDOW_UPDATE or PING written
      before its writer received DATA in the current operation belongs to the latest one in
      which it did; a PING ACK goes with its PING. In practice: grpc-core sends the 26 bytes of
      WINDOW_UPDATE for a pushed message with the recipient's next call (the ack), and they are
      counted to ``deliver``; its BDP PINGs fire on a timer (100 ms and growing) and are
      counted, with their ACK and any WINDOW_UPDATE, to the call whose DATA they measured.
    Each operation's bytes must equal the sum of its classified frames, or we raise
    MeasurementError rather than report a number we cannot explain.

Operations (``op``)
    connect         TCP connect plus the transport's handshake (custom: HELLO/WELCOME; gRPC:
                    preface, both SETTINGS and their ACKs, the connection WINDOW_UPDATE), i.e.
                    what ``ChatClient.connect()`` causes.
    signup, login   for gRPC this includes what its client does to log in: the Signup/Login
                    call and opening the Subscribe stream that carries pushes.
    list_accounts   pattern ``wc<tag>r00?`` (12 characters), which matches 10 names of 12
                    characters; default page size, so one page with ``more`` false.
    send            one message, on the sender's connection: its request and its reply.
    deliver         the push of that message, on one live recipient's own connection, and
                    what that connection sends because of it (gRPC: flow control). Clients
                    run with auto_ack off, so the ack is its own operation:
    ack             the recipient acknowledging that one message id.
    logout, delete_account, close (what ``ChatClient.close()`` sends).
    Usernames are 12 characters and passwords 16 bytes on both transports; the run creates
    accounts named ``wc<6 hex>...`` and deletes them at the end.

Phases
    first   the first call of that op on a fresh connection, after only the calls needed to
            reach it (connect; signup or login for ops that need a session): the median of
            ``Plan.first_passes`` such passes, each on new connections. For gRPC the HPACK
            tables then hold the headers of those earlier calls but nothing of this op.
            connect, delete_account and close happen once per connection: first only.
    steady  repeated calls on a warm connection (after a warm-up call).
    A row's numbers come from its median call, chosen per direction (the call with the median
    ``c2s_bytes`` gives every c2s_* field, the one with the median ``s2c_bytes`` every s2c_*
    field), so each direction's parts sum to its total and describe one real call. gRPC's
    timer-driven BDP pings land on some calls and not others: the median is the typical call,
    ``c2s_mean``/``s2c_mean`` spread those pings over all calls measured.

Row keys
    transport, op, phase; body_bytes (UTF-8 bytes of the message body; None for ops without
    one), recipients (send/deliver: how many recipients the message named; else None), text
    ("ascii", or "utf8": Cyrillic, CJK and emoji filling the same byte count; else None);
    c2s_bytes, s2c_bytes and their parts c2s_payload, c2s_framing, c2s_headers, c2s_control
    (s2c_* likewise); samples (calls measured), c2s_mean, s2c_mean, c2s_range and s2c_range
    ([min, max] over the calls); c2s_detail, s2c_detail: the median call's bytes per frame
    kind (custom: opcode names, ERROR_NOTICE for an ERROR on request id 0; gRPC: frame types,
    PING_ACK, SETTINGS_ACK, WINDOW_UPDATE on the connection, WINDOW_UPDATE_STREAM, PREFACE).

Breakdown: custom protocol (frame = length varint | opcode | request id varint | body)
    payload   the message body: the positional fields, including their own varint lengths and
              counts (just as gRPC's payload includes protobuf's tags and lengths: each is
              "the encoded message"; ``bench/payloads.py`` compares the two encodings).
    framing   the frame's length varint, opcode byte and request id varint.
    headers   always 0: the protocol has none.
    control   whole frames that are not a request, its response or a message push: HELLO,
              WELCOME, PING/PONG, and ERROR frames on request id 0 (connection errors and
              session-end notices).
    PROTOCOL.md section 11 gives each frame's cost; tests/unit/test_bench_wire_sizes.py checks
    the measured SEND, DELIVER, ACK and HELLO against it (SEND: len(B) + len(N) + 5 bytes).

Breakdown: gRPC (``bench/h2frames.py`` has the details)
    payload   the protobuf bytes of each message (inside DATA, after the 5-byte gRPC prefix).
    framing   the 9-byte header of every DATA frame, plus the 5-byte gRPC message prefix.
    headers   whole HEADERS/CONTINUATION frames (request headers, response headers, trailers;
              HPACK-compressed, so a first call costs more than a steady one).
    control   the preface and whole SETTINGS, WINDOW_UPDATE, PING, RST_STREAM, GOAWAY and
              PRIORITY frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.h2frames import CATEGORIES, CONTROL, FRAMING, PAYLOAD, grpc_accounts
from bench.payloads import (
    LIST_MATCHES,
    PASSWORD,
    QUICK_SIZES,
    RECIPIENT_COUNTS,
    SIZES,
    make_body,
    username,
)
from bench.wire_relay import (
    C2S,
    DIRECTIONS,
    AccountFactory,
    Count,
    CountingRelay,
    MeasurementError,
    settle,
)
from core.client import ChatClient
from core.types import Delivery
from transports import registry
from transports.custom import (
    NEED_DATA,
    OPCODE_OF,
    Connection,
    ConnectionClosed,
    Error,
    Hello,
    Ping,
    Pong,
    Role,
    Welcome,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds any one operation may take before the run fails (a 64 KiB send on a slow machine
#: takes milliseconds; this only stops a hung transport from hanging the bench).
OP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Plan:
    """How much to measure. ``repeats`` calls for each steady op, ``sweep_repeats`` per sweep
    point (the sizes are deterministic, so a few calls only guard against a stray frame)."""

    first_passes: int  # fresh-connection passes: samples of each ``first`` row
    repeats: int
    sweep_repeats: int
    body_sizes: tuple[int, ...]
    recipient_counts: tuple[int, ...]


FULL = Plan(5, 15, 5, SIZES, RECIPIENT_COUNTS)
QUICK = Plan(3, 5, 3, QUICK_SIZES, (1, 10))
BASE_BODY = 32  # the body of the first/steady send rows, and of the recipient sweep


# -- the custom protocol's frames ----------------------------------------------------------
class CustomWireAccount:
    """Classifies one direction of a custom-protocol connection (see the module docstring).

    PROTOCOL.md section 3: frame = length varint (the bytes after it) | opcode (1 byte) |
    request id varint | body. We split frames ourselves (sizes come from the raw bytes), then
    hand each whole frame to the transport's own sans-IO codec, which must decode it to exactly
    one event: so every byte counted is also a byte the protocol accounts for.
    """

    def __init__(self, *, client_to_server: bool) -> None:
        self._buffer = bytearray()
        if client_to_server:
            self._codec = Connection(Role.SERVER)  # reads what a server reads
        else:
            self._codec = Connection(Role.CLIENT)
            self._codec.send(Hello())  # the client's HELLO went the other way; expect WELCOME
        self.totals: Counter[str] = Counter(dict.fromkeys(CATEGORIES, 0))
        self.by_kind: Counter[str] = Counter()
        self.epoch = 0
        self.moved: list[Any] = []  # always empty: every frame belongs to when it was sent

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        self._buffer += data
        buf, pos = self._buffer, 0
        while True:
            length, length_size = _read_varint(buf, pos)
            end = pos + length_size + length
            if not length_size or end > len(buf):
                break
            _, id_size = _read_varint(buf, pos + length_size + 1)
            self._codec.receive_data(bytes(buf[pos:end]))
            event = self._codec.next_event()
            if (
                self._codec.buffered
                or not id_size
                or event is NEED_DATA
                or isinstance(event, ConnectionClosed)
            ):
                raise ValueError(f"the codec did not read the {end - pos}-byte frame as one event")
            self._count(event, length_size + 1 + id_size, end - pos)
            pos = end
        del buf[:pos]

    def _count(self, event: object, envelope: int, size: int) -> None:
        kind = OPCODE_OF[type(event)].name
        if isinstance(event, Error) and event.request_id == 0:
            kind = "ERROR_NOTICE"  # not an answer to a request: a connection or session notice
        if isinstance(event, _CONTROL_EVENTS) or kind == "ERROR_NOTICE":
            self.totals[CONTROL] += size
        else:
            self.totals[FRAMING] += envelope
            self.totals[PAYLOAD] += size - envelope
        self.by_kind[kind] += size


_CONTROL_EVENTS = (Hello, Welcome, Ping, Pong)


def _read_varint(buf: bytearray, pos: int) -> tuple[int, int]:
    """(value, bytes it took), or (0, 0) if the varint is not all there yet."""
    value = shift = 0
    for index in range(pos, min(len(buf), pos + 10)):
        value |= (buf[index] & 0x7F) << shift
        if buf[index] < 0x80:
            return value, index - pos + 1
        shift += 7
    if len(buf) - pos >= 10:
        raise ValueError("a varint longer than 10 bytes")
    return 0, 0


def account_factory(transport: str) -> AccountFactory:
    """The parser for a transport's bytes; a new transport must add its own here."""
    if transport == "custom":
        return lambda: (
            CustomWireAccount(client_to_server=True),
            CustomWireAccount(client_to_server=False),
        )
    if transport == "grpc":
        return grpc_accounts
    raise ValueError(f"no wire parser for transport {transport!r}; add one to bench/wire.py")


# -- rows --------------------------------------------------------------------------------------
Sample = dict[str, Count]  # direction -> bytes of one call


def make_row(
    transport: str,
    op: str,
    phase: str,
    samples: Sequence[Sample],
    *,
    body_bytes: int | None = None,
    recipients: int | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """One result row; ``samples`` holds one call for phase first, several for steady."""
    row: dict[str, Any] = {
        "transport": transport,
        "op": op,
        "phase": phase,
        "body_bytes": body_bytes,
        "recipients": recipients,
        "text": text,
    }
    chosen = {d: median_call([s[d] for s in samples]) for d in DIRECTIONS}
    for d in DIRECTIONS:
        row[f"{d}_bytes"] = chosen[d].bytes
    for d in DIRECTIONS:
        for category in CATEGORIES:
            row[f"{d}_{category}"] = chosen[d].categories[category]
    row["samples"] = len(samples)
    for d in DIRECTIONS:
        sizes = [s[d].bytes for s in samples]
        row[f"{d}_mean"] = round(sum(sizes) / len(sizes), 1)
        row[f"{d}_range"] = [min(sizes), max(sizes)]
        row[f"{d}_detail"] = dict(sorted(chosen[d].kinds.items()))
    return row


def median_call(counts: Sequence[Count]) -> Count:
    """The call with the median byte count (the lower middle one for an even number)."""
    ordered = sorted(counts, key=lambda count: count.bytes)
    return ordered[(len(ordered) - 1) // 2]


# -- the run -----------------------------------------------------------------------------------
class _Conn:
    """A measured client, its relay, and where its last operation's bytes went."""

    def __init__(self, relay: CountingRelay, client: ChatClient) -> None:
        self.relay = relay
        self.client = client
        self.mark = relay.snapshot()  # the relay's counts when its last operation settled
        self.last: Sample | None = None  # that operation's sample, which takes late bytes
        self.by_epoch: dict[int, Sample] = {}  # every operation's sample, by its number


class _Run:
    """One transport's measurement: its clients, relays, accounts and samples."""

    def __init__(self, transport: str, address: tuple[str, int], plan: Plan) -> None:
        self.transport = transport
        self.address = address
        self.plan = plan
        self.module = registry.get(transport)
        self.factory = account_factory(transport)
        self.tag = secrets.token_hex(3)  # run-unique names, all 12 characters
        self.conns: list[_Conn] = []
        self.accounts: list[str] = []  # created by this run, deleted at the end
        self.samples: dict[tuple[Any, ...], list[Sample]] = {}
        self.epochs = itertools.count(1)
        self.kernel_checks = 0  # quiet moments at which TCP_INFO agreed with the relay

    def name(self, role: str, index: int) -> str:
        return username(self.tag, role, index)

    def keep(self, op: str, phase: str, sample: Sample, **labels: Any) -> None:
        """File a sample under its row; rows are built at the end, when late bytes are in."""
        key = (op, phase, labels.get("body_bytes"), labels.get("recipients"), labels.get("text"))
        self.samples.setdefault(key, []).append(sample)

    def rows(self) -> list[dict[str, Any]]:
        return [
            make_row(self.transport, op, phase, samples, body_bytes=size, recipients=n, text=text)
            for (op, phase, size, n, text), samples in self.samples.items()
        ]

    # -- measuring ---------------------------------------------------------------------------
    async def measured(
        self, conns: Sequence[_Conn], start: Callable[[], Awaitable[T]]
    ) -> tuple[T, list[Sample]]:
        """Run one operation (``start()`` begins it); return its result and each connection's
        bytes. ``start`` is a function, not an awaitable, so that nothing of the operation
        (a task that ``gather`` schedules at once, say) can run before the snapshot.

        Bytes a relay carried since its previous operation settled (a timer-driven BDP PING,
        say) are first added to that previous operation: every byte counted belongs to exactly
        one operation, the one it followed.
        """
        relays = [conn.relay for conn in conns]
        await settle(relays, from_now=False)
        epoch = next(self.epochs)
        for conn in conns:
            now = conn.relay.snapshot()
            if conn.last is not None:
                for d in DIRECTIONS:
                    conn.last[d] = conn.last[d] + (now[d] - conn.mark[d])
            conn.mark = now
            conn.relay.begin(epoch)
        async with asyncio.timeout(OP_TIMEOUT):
            result = await start()
        await settle(relays)
        samples = []
        for conn in conns:
            end = conn.relay.snapshot()
            sample = {d: end[d] - conn.mark[d] for d in DIRECTIONS}
            conn.mark, conn.last, conn.by_epoch[epoch] = end, sample, sample
            self._reattribute(conn)
            for d, count in sample.items():
                if count.bytes != count.parsed:
                    raise MeasurementError(
                        f"{self.transport}: {count.bytes} {d} bytes counted but "
                        f"{count.parsed} in whole frames"
                    )
            samples.append(sample)
        return result, samples

    @staticmethod
    def _reattribute(conn: _Conn) -> None:
        """Move late flow-control frames to the operation that caused them (h2frames)."""
        for d, records in conn.relay.take_moved().items():
            for record in records:
                source = conn.by_epoch.get(record.counted_in)
                target = conn.by_epoch.get(record.epoch)
                if source is None or target is None:
                    continue  # caused before this connection's first measured operation
                frame = Count(
                    record.size,
                    {c: record.size if c == record.category else 0 for c in CATEGORIES},
                    {record.kind: record.size},
                )
                source[d] = source[d] - frame
                target[d] = target[d] + frame

    async def call(
        self,
        conn: _Conn,
        method: Callable[..., Awaitable[T]],
        *args: Any,
        row: str | None = None,
        phase: str = "first",
    ) -> T:
        """``method(*args)`` on one connection; file its bytes under ``row`` if given."""
        result, (sample,) = await self.measured([conn], lambda: method(*args))
        if row is not None:
            self.keep(row, phase, sample)
        return result

    async def connect(self) -> _Conn:
        relay = await CountingRelay(self.address, self.factory).start()
        conn = _Conn(relay, self.module.open_client(relay.address, auto_ack=False))
        self.conns.append(conn)
        await self.call(conn, conn.client.connect, row="connect")
        if not conn.last or not conn.last[C2S].bytes:
            log.warning(
                "%s: connect() sent nothing; the handshake lands on the first call", self.transport
            )
        return conn

    async def disconnect(self, conn: _Conn, *, keep: bool = False) -> None:
        """Close a client (measured, so bytes that arrived after its last op are attributed)."""
        await self.call(conn, conn.client.close, row="close" if keep else None)
        self.conns.remove(conn)
        await self.release(conn)

    async def send(
        self, sender: _Conn, receiver: _Conn, recipients: Sequence[str], body: str
    ) -> tuple[Delivery, Sample, Sample]:
        """send on ``sender`` and the push it causes on ``receiver``, measured together."""
        (_, delivery), (sent, pushed) = await self.measured(
            [sender, receiver],
            lambda: asyncio.gather(
                sender.client.send(recipients, body), receiver.client.next_message(OP_TIMEOUT)
            ),
        )
        return delivery, sent, pushed

    # -- the scenario --------------------------------------------------------------------------
    async def setup(self) -> None:
        """Accounts the measured clients need, made over a direct (unmeasured) connection."""
        count = max(*self.plan.recipient_counts, LIST_MATCHES)
        names = [self.name("r", i) for i in range(count)] + [self.name("l", 0)]
        for name in names:  # one connection each: no signup/logout race to depend on
            async with self.module.open_client(self.address, auto_ack=False) as client:
                await client.signup(name, PASSWORD)
                self.accounts.append(name)

    async def first_calls(self, index: int) -> None:
        """Each op once on fresh connections: one sample of every ``first`` row."""
        base = {"body_bytes": BASE_BODY, "recipients": 1, "text": "ascii"}
        sender_name, receiver_name = self.name("s", index), self.name("r", 0)
        sender = await self.connect()
        await self.call(sender, sender.client.signup, sender_name, PASSWORD, row="signup")
        self.accounts.append(sender_name)
        receiver = await self.connect()
        await self.call(receiver, receiver.client.login, receiver_name, PASSWORD, row="login")
        listing = sender.client.list_accounts
        page = await self.call(sender, listing, self.list_pattern, row="list_accounts")
        if len(page.usernames) != LIST_MATCHES:
            raise MeasurementError(f"list_accounts found {len(page.usernames)} names, not 10")
        body = make_body(BASE_BODY, "ascii")
        delivery, sent, pushed = await self.send(sender, receiver, [receiver_name], body)
        self.keep("send", "first", sent, **base)
        self.keep("deliver", "first", pushed, **base)
        await self.call(receiver, receiver.client.ack, [delivery.message_id], row="ack")
        await self.call(sender, sender.client.logout, row="logout")
        await self.disconnect(sender, keep=True)
        await self.disconnect(receiver)

        deleter = await self.connect()
        await self.call(deleter, deleter.client.login, sender_name, PASSWORD)
        await self.call(deleter, deleter.client.delete_account, sender_name, row="delete_account")
        self.accounts.remove(sender_name)
        await self.disconnect(deleter)

    async def steady_messaging(self) -> None:
        """list, send, deliver, ack on warm connections; the body and recipient sweeps."""
        plan, receiver_name = self.plan, self.name("r", 0)
        sender_name = self.name("s", plan.first_passes)
        sender = await self.connect()
        await self.call(sender, sender.client.signup, sender_name, PASSWORD)
        self.accounts.append(sender_name)
        receiver = await self.connect()
        await self.call(receiver, receiver.client.login, receiver_name, PASSWORD)
        for _ in range(plan.repeats):
            listing = sender.client.list_accounts
            await self.call(sender, listing, self.list_pattern, row="list_accounts", phase="steady")

        base = (BASE_BODY, "ascii", 1)
        points = [base] + [
            (size, text, 1) for text in ("ascii", "utf8") for size in plan.body_sizes
        ]
        points += [(BASE_BODY, "ascii", count) for count in plan.recipient_counts]
        for size, text, count in dict.fromkeys(points):  # in order, each point once
            if text == "utf8" and size < 2:
                continue  # no non-ASCII character fits in one byte
            body = make_body(size, text)
            names = [self.name("r", i) for i in range(count)]
            labels = {"body_bytes": size, "recipients": count, "text": text}
            for _ in range(plan.repeats if (size, text, count) == base else plan.sweep_repeats):
                delivery, sent, pushed = await self.send(sender, receiver, names, body)
                self.keep("send", "steady", sent, **labels)
                self.keep("deliver", "steady", pushed, **labels)
                row = "ack" if (size, text, count) == base else None
                ids = [delivery.message_id]
                await self.call(receiver, receiver.client.ack, ids, row=row, phase="steady")
        await self.disconnect(sender)
        await self.disconnect(receiver)

    async def steady_sessions(self) -> None:
        """login/logout cycles on one connection, then signup/logout cycles on another."""
        name = self.name("l", 0)
        conn = await self.connect()
        await self.call(conn, conn.client.login, name, PASSWORD)  # warm-up: not "steady" yet
        await self.call(conn, conn.client.logout)
        for _ in range(self.plan.repeats):
            await self.call(conn, conn.client.login, name, PASSWORD, row="login", phase="steady")
            await self.call(conn, conn.client.logout, row="logout", phase="steady")
        await self.disconnect(conn)
        conn = await self.connect()
        for index in range(self.plan.repeats + 1):  # the first one is the warm-up
            name = self.name("u", index)
            row = "signup" if index else None
            await self.call(conn, conn.client.signup, name, PASSWORD, row=row, phase="steady")
            self.accounts.append(name)
            await self.call(conn, conn.client.logout)
        await self.disconnect(conn)

    @property
    def list_pattern(self) -> str:
        return f"wc{self.tag}r00?"  # 12 characters; matches r000..r009

    async def release(self, conn: _Conn) -> None:
        self.kernel_checks += sum(c.kernel_checks for c in conn.relay.connections)
        await conn.relay.close()

    async def close(self) -> None:
        for conn in list(self.conns):
            with contextlib.suppress(Exception):
                await conn.client.close()
            await self.release(conn)

    async def cleanup(self) -> None:
        """Delete this run's accounts (and so their pending messages) over direct connections."""
        for name in self.accounts:
            try:
                async with asyncio.timeout(OP_TIMEOUT):
                    async with self.module.open_client(self.address, auto_ack=False) as client:
                        await client.login(name, PASSWORD)
                        await client.delete_account(name)
            except Exception as exc:
                log.warning("%s: could not delete bench account %s: %r", self.transport, name, exc)


async def measure_sizes(
    transport: str, address: tuple[str, int], *, quick: bool
) -> list[dict[str, Any]]:
    """Bytes on the wire per operation of ``transport``, whose server listens at ``address``.

    Returns one row per (op, phase, body size, recipients, text); see the module docstring for
    every key. Creates accounts named ``wc<6 hex>...`` and deletes them before returning.
    """
    run = _Run(transport, address, QUICK if quick else FULL)
    try:
        await run.setup()
        for index in range(run.plan.first_passes):
            await run.first_calls(index)
        await run.steady_messaging()
        await run.steady_sessions()
    finally:
        await run.close()
        await run.cleanup()
    rows = run.rows()
    log.info(
        "%s: %d rows; at %d quiet moments the kernel's TCP counters equalled the relay's",
        transport,
        len(rows),
        run.kernel_checks,
    )
    return rows


__all__ = [
    "FULL",
    "QUICK",
    "CustomWireAccount",
    "MeasurementError",
    "Plan",
    "account_factory",
    "make_row",
    "measure_sizes",
    "median_call",
]
