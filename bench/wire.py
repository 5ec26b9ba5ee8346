"""Bytes on the wire per operation, counted the same way for every transport.

Method
    The client under test (a real ``ChatClient`` from the transport registry, in this process)
    connects to a counting relay (``bench/wire_relay.py``): a TCP proxy on 127.0.0.1 in front
    of the real server (another process), which counts every byte it forwards in each direction
    as it reads it and feeds the same bytes to the transport's byte counter, which splits them
    into whole frames and classifies each byte. The counter lives beside its transport
    (``transports/<name>/_bytes.py``) and is found through the registry
    (``registry.entry(name).wire_account_factory()``): this module knows no transport. What is
    counted is exactly the TCP payload each side wrote. TCP/IP headers, SYN/FIN and pure ACK
    segments are not counted: they depend on segmentation, not on the protocol.
    ``bench/capture.py`` checks the steady figures against a packet capture of a client talking
    to the server directly (no relay).

Attribution (which operation a byte belongs to)
    Operations run one at a time. Each is numbered (its epoch); before it starts, its relays
    must be quiet and we snapshot them; we await the operation, then settle: wait until every
    relay of the operation has carried no byte for QUIET (30 ms), each counter sits on a frame
    boundary, and the kernel's own TCP counters (TCP_INFO) of every relay socket equal the
    relay's counts. The bytes between the snapshots are the operation's; bytes a relay carries
    between operations are added to its previous operation. Unmeasured blocks (the warm-up,
    the amortized window) are numbered like operations. Each operation's bytes must equal the
    sum of its classified frames, or we raise MeasurementError. ``bench/wire_rows.py`` builds
    the rows.

Headline figures: the call's own frames
    Each counter names the frame kinds that are its connection's, not any call's
    (``CONNECTION_KINDS``): frames a runtime writes on a timer or by its own estimate, whose
    presence, timing and size are not a function of the call: gRPC's PINGs and PING ACKs
    (BDP estimator, keepalive), its WINDOW_UPDATEs on stream 0 and on the call's stream
    (grpc-core credits data when its announce threshold or BDP estimate says so, with this
    call, the next one or not at all), SETTINGS and their ACKs after the handshake, GOAWAY;
    WebSocket keepalive PING/PONG. A call's headline figure is every byte of the call less
    those frames: for HTTP/2 exactly its HEADERS (request, response headers, trailers),
    CONTINUATION, DATA and RST_STREAM frames; for custom, protobuf-tcp and WebSocket, every
    frame of the call. The criterion is determinism: a frame is in a headline only if the call
    alone decides whether it is written and how long it is; so each steady row is the same in
    every call and every run (``*_range`` shows it: one value). The ``connect`` operation is
    the connection's own set-up and keeps every frame (preface, SETTINGS, their ACKs, the
    initial WINDOW_UPDATE: the same every time). Each row's figures are those of its median
    call per direction; ``samples`` is the calls measured, ``with_connection_frames`` those
    during which the connection also carried frames of its own, ``*_connection_mean`` those
    bytes per call (spacing-dependent: never a headline). HPACK makes a gRPC method's first
    call on a connection dearer, so each steady row's method is called once, unmeasured,
    before its calls are measured.

The connection's own frames: the ``amortized`` rows
    After the steady rows, ``WirePlan.amortized_calls`` (the full plan 1,000, the quick plan
    100: a smoke check) send round trips run back to back on the warm sender and receiver
    connections (send, the push, the receiver's ack), counted as one window. Every byte of
    CONNECTION_KINDS frames in the window is reported,
    by kind, per call and per second of the window; so a reader sees what a call costs over
    a long run (its headline plus its share of the connection's frames) and no headline
    depends on call spacing or run length.

Operations (``op``)
    connect         TCP connect plus the transport's handshake (custom: HELLO/WELCOME; gRPC:
                    preface, SETTINGS and their ACKs, WINDOW_UPDATE; WebSocket: the HTTP
                    upgrade), i.e. what ``ChatClient.connect()`` causes.
    signup, login   for gRPC this includes what its client does to log in (the Subscribe
                    stream that carries pushes).
    list_accounts   pattern ``wc<tag>r00?`` (12 characters), which matches 10 names of 12
                    characters; default page size, so one page with ``more`` false.
    send            one message, on the sender's connection: its request and its reply.
    deliver         the push of that message on one live recipient's own connection (its
                    flow-control credit for it is the connection's: see above). Clients run
                    with auto_ack off, so the ack is its own operation:
    ack             the recipient acknowledging that one message id.
    logout, delete_account (with the account's password), close (what ``ChatClient.close()``
                    sends).
    read_history, mark_read, list_conversations, delete_messages
                    the history operations (issue 9) of one 1:1 conversation: a page of 50
                    messages of 32 bytes by conversation id, the read mark, one page of
                    conversations, one id deleted for me (with the push to my own session);
                    prepared unmeasured and measured by ``bench/wire_history.py``.
    resume, change_password, password_changed
                    issue 13: a login by resume token, a password change, the notice that
                    ends the user's other session; ``bench/wire_account.py`` (its docstring
                    says what each row holds, and why a resume and a change run together).
    Usernames are 12 characters and passwords 16 bytes; the run creates accounts named
    ``wc<6 hex>...`` and deletes them at the end.

Phases
    first      the first call of that op on a fresh connection, after only the calls needed
               to reach it: ``WirePlan.first_passes`` passes, each on new connections.
    steady     repeated calls on a warm connection, after WARM_UP_IDS unmeasured round trips
               (login/logout cycles for the session rows), so that message ids and request
               ids are past 127 (``holds_for`` says for which ids each figure holds).
    amortized  send (sender's connection) and deliver (the receiver's, its acks included)
               over the long window described above.

Row keys (first and steady)
    transport, op, phase; body_bytes, recipients, text ("ascii" or "utf8": Cyrillic, CJK and
    emoji filling the same byte count); c2s_bytes, s2c_bytes (the headline) and their parts
    c2s_payload, c2s_framing, c2s_headers, c2s_control (s2c_* likewise); samples (calls
    measured); c2s_mean, s2c_mean and c2s_range, s2c_range of the headline over the calls;
    with_connection_frames, c2s_connection_mean, s2c_connection_mean (the connection's frames
    that crossed during the calls); c2s_mean_all, s2c_mean_all (every byte, the connection's
    frames included); c2s_detail, s2c_detail: the chosen call's bytes per frame kind;
    holds_for: the ids for which the figure holds where a size depends on an id (e.g.
    "message ids 128..16383; request ids 1..127"), else None.
Row keys (amortized)
    transport, op, phase, body_bytes, recipients, text as above; calls, seconds; c2s_bytes,
    s2c_bytes and the four parts: the window's bytes per call (the connection's frames
    included); c2s_connection_bytes, s2c_connection_bytes: the connection's frames per call;
    control_bytes (the window's connection frames, both directions), control_bytes_per_call,
    control_bytes_per_s; c2s_detail, s2c_detail: the window's connection frames by kind;
    holds_for.

The breakdown of each transport (payload / framing / headers / control) is documented in its
counter's module docstring: transports/custom/_bytes.py, transports/protobuf_tcp/_bytes.py,
transports/grpc/_bytes.py (both gRPC transports), transports/websocket/_bytes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from bench.config import WIRE_QUICK, WirePlan
from bench.payloads import LIST_MATCHES, PASSWORD, make_body, username
from bench.wire_account import account_calls
from bench.wire_history import history_calls
from bench.wire_relay import (
    C2S,
    DIRECTIONS,
    AccountFactory,
    CountingRelay,
    MeasurementError,
    settle,
)
from bench.wire_rows import (
    Call,
    Conn,
    Sample,
    Window,
    amortized_row,
    make_row,
    median_call,
)
from core.errors import ChatError, Overloaded
from core.types import Delivery
from transports import registry
from transports._bytes import varint_class

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds any one operation may take before the run fails (a 64 KiB send on a slow machine
#: takes milliseconds; this only stops a hung transport from hanging the bench).
OP_TIMEOUT = 30.0
#: A request the server shed (it was overloaded: its loop had stalled, e.g. on a busy shared
#: machine) yields no byte figure: the whole measurement runs again, after a pause that lets
#: whatever crowded the machine move on, at most this many more times.
SHED_RETRIES = 2
SHED_PAUSE = 2.0
#: Seconds the amortized window may take at most.
WINDOW_TIMEOUT = 300.0


BASE_BODY = 32  # the body of the first/steady send rows, and of the recipient sweep
#: Round trips (or login/logout cycles x 2) made, unmeasured, before the steady rows, so that
#: message ids and each connection's request ids are past 127 (two-byte varints, three decimal
#: digits): the size a figure holds for is then that of a server past its first messages.
WARM_UP_IDS = 128


# -- the counters, through the registry ----------------------------------------------------------
def account_factory(transport: str) -> AccountFactory:
    """The byte counters of ``transport`` (its registry entry's ``wire_account``)."""
    return cast(AccountFactory, registry.entry(transport).wire_account_factory())


def account_traits(factory: AccountFactory) -> tuple[frozenset[str], Any]:
    """(the connection's frame kinds, id_class) of a transport's counters."""
    pair = factory()
    kinds = frozenset().union(*(getattr(a, "CONNECTION_KINDS", frozenset()) for a in pair))
    return kinds, getattr(pair[0], "id_class", varint_class)


# -- the run -----------------------------------------------------------------------------------
class _Run:
    """One transport's measurement: its clients, relays, accounts and calls."""

    def __init__(self, transport: str, address: tuple[str, int], plan: WirePlan) -> None:
        self.transport = transport
        self.address = address
        self.plan = plan
        self.module = registry.get(transport)
        self.factory = account_factory(transport)
        self.connection_kinds, self.id_class = account_traits(self.factory)
        self.tag = secrets.token_hex(3)  # run-unique names, all 12 characters
        self.conns: list[Conn] = []
        self.accounts: list[str] = []  # created by this run, deleted at the end
        self.passwords: dict[str, str] = {}  # an account's password if not PASSWORD
        self.calls: dict[tuple[Any, ...], list[Call]] = {}
        self.windows: list[Window] = []
        self.epochs = itertools.count(1)
        self.kernel_checks = 0  # quiet moments at which TCP_INFO agreed with the relay

    def name(self, role: str, index: int) -> str:
        return username(self.tag, role, index)

    def keep(self, op: str, phase: str, call: Call, **labels: Any) -> None:
        """File a call under its row; rows are built at the end, when late bytes are in."""
        key = (op, phase, labels.get("body_bytes"), labels.get("recipients"), labels.get("text"))
        self.calls.setdefault(key, []).append(call)

    def rows(self) -> list[dict[str, Any]]:
        rows = [
            make_row(
                self.transport,
                op,
                phase,
                calls,
                connection_kinds=self.connection_kinds,
                id_class=self.id_class,
                body_bytes=size,
                recipients=n,
                text=text,
            )
            for (op, phase, size, n, text), calls in self.calls.items()
        ]
        return rows + [
            amortized_row(self.transport, window, self.connection_kinds, BASE_BODY)
            for window in self.windows
        ]

    # -- measuring ---------------------------------------------------------------------------
    async def measured(
        self, conns: Sequence[Conn], start: Callable[[], Awaitable[T]]
    ) -> tuple[T, list[Call]]:
        """Run one operation (``start()`` begins it); return its result and each connection's
        call. ``start`` is a function, not an awaitable, so that nothing of the operation
        can run before the snapshot. Bytes a relay carried since its previous operation
        settled are first added to that previous operation."""
        await settle([conn.relay for conn in conns], from_now=False)
        epoch = next(self.epochs)
        for conn in conns:
            self._close_gap(conn)
            conn.relay.begin(epoch)
            conn.forget_ids()
        async with asyncio.timeout(OP_TIMEOUT):
            result = await start()
        await settle([conn.relay for conn in conns])
        calls = []
        for conn in conns:
            end = conn.relay.snapshot()
            sample = {d: end[d] - conn.mark[d] for d in DIRECTIONS}
            conn.mark, conn.last, conn.by_epoch[epoch] = end, sample, sample
            conn.epochs.append(epoch)
            for d, count in sample.items():
                if count.bytes != count.parsed:
                    raise MeasurementError(
                        f"{self.transport}: {count.bytes} {d} bytes counted but "
                        f"{count.parsed} in whole frames"
                    )
            calls.append(Call(conn, epoch, request_id=conn.request_id()))
        return result, calls

    @staticmethod
    def _close_gap(conn: Conn) -> None:
        """Add what the connection carried since its last operation settled to that one."""
        now = conn.relay.snapshot()
        if conn.last is not None and conn.mark:
            for d in DIRECTIONS:
                conn.last[d] = conn.last[d] + (now[d] - conn.mark[d])
        conn.mark = now

    async def call(
        self,
        conn: Conn,
        method: Callable[..., Awaitable[T]],
        *args: Any,
        row: str | None = None,
        phase: str = "first",
        message_id: int | None = None,
    ) -> T:
        """``method(*args)`` on one connection; file its bytes under ``row`` if given."""
        result, (call,) = await self.measured([conn], lambda: method(*args))
        call.message_id = message_id
        if row is not None:
            self.keep(row, phase, call)
        return result

    async def connect(self) -> Conn:
        relay = await CountingRelay(self.address, self.factory).start()
        conn = Conn(relay, self.module.open_client(relay.address, auto_ack=False))
        conn.mark = relay.snapshot()
        self.conns.append(conn)
        await self.call(conn, conn.client.connect, row="connect")
        if not conn.last or not conn.last[C2S].bytes:
            log.warning(
                "%s: connect() sent nothing; the handshake lands on the first call", self.transport
            )
        return conn

    async def disconnect(self, conn: Conn, *, keep: bool = False) -> None:
        """Close a client (measured, so bytes that arrived after its last op are attributed)."""
        await self.call(conn, conn.client.close, row="close" if keep else None)
        conn.closed = True
        self.conns.remove(conn)
        await self.release(conn)

    async def send(
        self, sender: Conn, receiver: Conn, recipients: Sequence[str], body: str
    ) -> tuple[Delivery, Call, Call]:
        """send on ``sender`` and the push it causes on ``receiver``, measured together."""

        async def send_and_push() -> Delivery:
            push = asyncio.ensure_future(receiver.client.next_message(OP_TIMEOUT))
            try:
                await sender.client.send(recipients, body)
            except BaseException:
                push.cancel()  # the send failed: no push is coming
                raise
            return await push

        delivery, (sent, pushed) = await self.measured([sender, receiver], send_and_push)
        sent.message_id = pushed.message_id = delivery.message_id
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
        ids = [delivery.message_id]
        await self.call(receiver, receiver.client.ack, ids, row="ack", message_id=ids[0])
        await self.call(sender, sender.client.logout, row="logout")
        await self.disconnect(sender, keep=True)
        await self.disconnect(receiver)

        deleter = await self.connect()
        await self.call(deleter, deleter.client.login, sender_name, PASSWORD)
        delete = deleter.client.delete_account
        await self.call(deleter, delete, sender_name, PASSWORD, row="delete_account")
        self.accounts.remove(sender_name)
        await self.disconnect(deleter)

    @staticmethod
    def enough(calls: int, minimum: int, *rows: tuple[str, dict[str, Any]]) -> bool:
        """At least ``minimum`` calls made in each of ``rows`` (every call counts: the
        connection's frames are never in a headline, so no call has to be left out)."""
        del rows  # named at the call sites for the reader: which rows the loop fills
        return calls >= minimum

    async def steady_messaging(self) -> None:
        """list, send, deliver, ack on warm connections; the sweeps; the amortized window."""
        plan, receiver_name = self.plan, self.name("r", 0)
        sender_name = self.name("s", plan.first_passes)
        sender = await self.connect()
        await self.call(sender, sender.client.signup, sender_name, PASSWORD)
        self.accounts.append(sender_name)
        receiver = await self.connect()
        await self.call(receiver, receiver.client.login, receiver_name, PASSWORD)
        base_body = make_body(BASE_BODY, "ascii")
        await self.unmeasured(
            (sender, receiver),
            lambda: self.round_trips(sender, receiver, [receiver_name], base_body, WARM_UP_IDS),
        )
        # One unmeasured listing first: a method's first call on a connection is not steady
        # (gRPC's HPACK sends its :path as a literal once, then indexes it).
        await self.unmeasured([sender], lambda: sender.client.list_accounts(self.list_pattern))
        made = 0
        while not self.enough(made, plan.repeats, ("list_accounts", {})):
            listing = sender.client.list_accounts
            await self.call(sender, listing, self.list_pattern, row="list_accounts", phase="steady")
            made += 1

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
            is_base = (size, text, count) == base
            rows = [("send", labels), ("deliver", labels)] + ([("ack", {})] if is_base else [])
            made = 0
            while not self.enough(made, plan.repeats if is_base else plan.sweep_repeats, *rows):
                delivery, sent, pushed = await self.send(sender, receiver, names, body)
                self.keep("send", "steady", sent, **labels)
                self.keep("deliver", "steady", pushed, **labels)
                ids = [delivery.message_id]
                row = "ack" if is_base else None
                ack = receiver.client.ack
                await self.call(receiver, ack, ids, row=row, phase="steady", message_id=ids[0])
                made += 1
        await self.amortized(sender, receiver, [receiver_name], base_body)
        await self.disconnect(sender)
        await self.disconnect(receiver)

    async def unmeasured(
        self, conns: Sequence[Conn], start: Callable[[], Awaitable[T]]
    ) -> tuple[T, float, dict[int, Sample]]:
        """Run ``start()`` outside any measured row: (its result, seconds, each connection's
        counts by ``id(conn)``). Its bytes are no other operation's gap."""
        await settle([c.relay for c in conns], from_now=False)
        epoch = next(self.epochs)
        for conn in conns:
            self._close_gap(conn)
            conn.last = None
            conn.relay.begin(epoch)
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with asyncio.timeout(WINDOW_TIMEOUT):
            result = await start()
        seconds = loop.time() - began
        await settle([c.relay for c in conns])
        counts = {}
        for conn in conns:
            end = conn.relay.snapshot()
            sample = {d: end[d] - conn.mark[d] for d in DIRECTIONS}
            conn.mark, conn.last = end, sample
            conn.by_epoch[epoch] = sample  # numbered like an operation, never a row
            conn.epochs.append(epoch)
            counts[id(conn)] = sample
        return result, seconds, counts

    @staticmethod
    async def round_trips(
        sender: Conn, receiver: Conn, names: Sequence[str], body: str, calls: int
    ) -> list[int]:
        """``calls`` sends back to back, each with its push and the receiver's ack."""
        ids = []
        for _ in range(calls):
            _, delivery = await asyncio.gather(
                sender.client.send(names, body), receiver.client.next_message(OP_TIMEOUT)
            )
            await receiver.client.ack([delivery.message_id])
            ids.append(delivery.message_id)
        return ids

    async def amortized(
        self, sender: Conn, receiver: Conn, names: Sequence[str], body: str
    ) -> None:
        """``plan.amortized_calls`` send round trips back to back, counted as one window."""
        calls = self.plan.amortized_calls
        ids, seconds, counts = await self.unmeasured(
            (sender, receiver), lambda: self.round_trips(sender, receiver, names, body, calls)
        )
        for op, conn in (("send", sender), ("deliver", receiver)):
            window = Window(op, conn, counts[id(conn)], len(ids), seconds, (min(ids), max(ids)))
            self.windows.append(window)

    async def steady_sessions(self) -> None:
        """login/logout cycles on one connection, then signup/logout cycles on another."""
        name = self.name("l", 0)
        conn = await self.connect()
        await self.unmeasured([conn], lambda: self.login_cycles(conn, name, WARM_UP_IDS // 2))
        made = 0
        while not self.enough(made, self.plan.repeats, ("login", {}), ("logout", {})):
            await self.call(conn, conn.client.login, name, PASSWORD, row="login", phase="steady")
            await self.call(conn, conn.client.logout, row="logout", phase="steady")
            made += 1
        await self.disconnect(conn)
        conn = await self.connect()
        await self.unmeasured([conn], lambda: self.login_cycles(conn, name, WARM_UP_IDS // 2))
        made = index = 0
        while not self.enough(made, self.plan.repeats, ("signup", {})):
            name = self.name("u", index)
            row = "signup" if index else None  # the first one is the warm-up
            await self.call(conn, conn.client.signup, name, PASSWORD, row=row, phase="steady")
            self.accounts.append(name)
            await self.call(conn, conn.client.logout)
            made += bool(index)
            index += 1
        await self.disconnect(conn)

    @staticmethod
    async def login_cycles(conn: Conn, name: str, cycles: int) -> None:
        for _ in range(cycles):
            await conn.client.login(name, PASSWORD)
            await conn.client.logout()

    @property
    def list_pattern(self) -> str:
        return f"wc{self.tag}r00?"  # 12 characters; matches r000..r009

    async def release(self, conn: Conn) -> None:
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
                        password = self.passwords.get(name, PASSWORD)
                        await client.login(name, password)
                        await client.delete_account(name, password)
            except Exception as exc:
                log.warning("%s: could not delete bench account %s: %r", self.transport, name, exc)


#: The scenarios of a run, in order; ``measure_sizes(parts=...)`` runs some of them
#: ("sessions" reuses an account that "messaging" makes: either makes it).
PARTS = ("messaging", "history", "account", "sessions")


async def measure_sizes(
    transport: str,
    address: tuple[str, int],
    plan: WirePlan = WIRE_QUICK,
    *,
    parts: Sequence[str] = PARTS,
) -> list[dict[str, Any]]:
    """Bytes on the wire per operation of ``transport``, whose server listens at ``address``.

    Works for any transport whose registry entry names a byte counter. Returns one row per
    (op, phase, body size, recipients, text); see the module docstring for every key.
    Creates accounts named ``wc<6 hex>...`` and deletes them before returning. ``parts``:
    which of PARTS to measure (all by default).
    """
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown part(s) {sorted(unknown)}; choose from {PARTS}")
    retries = SHED_RETRIES
    while True:
        try:
            return await _measure(transport, address, plan, parts)
        except ChatError as exc:
            if retries == 0 or not _shed(exc):
                raise
            retries -= 1
            log.warning("%s: the server shed a request (%s); measuring again", transport, exc)
            await asyncio.sleep(SHED_PAUSE)


def _shed(exc: ChatError) -> bool:
    """Whether the server refused a request for load alone ("try again in a moment"): every
    transport's client raises Overloaded for it (custom and protobuf-tcp read version 4's
    OVERLOADED, WebSocket 2.2's, gRPC its OVERLOADED reason), so no sentence is read."""
    return isinstance(exc, Overloaded)


async def _measure(
    transport: str, address: tuple[str, int], plan: WirePlan, parts: Sequence[str]
) -> list[dict[str, Any]]:
    run = _Run(transport, address, plan)
    try:
        if "messaging" in parts or "sessions" in parts:
            await run.setup()
        if "messaging" in parts:
            for index in range(run.plan.first_passes):
                await run.first_calls(index)
            await run.steady_messaging()
        if "history" in parts:
            await history_calls(run)
        if "account" in parts:
            await account_calls(run)
        if "sessions" in parts:
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
    "PARTS",
    "Call",
    "MeasurementError",
    "account_factory",
    "account_traits",
    "make_row",
    "measure_sizes",
    "median_call",
]
