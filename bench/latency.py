"""Latency with one request in flight: every chat operation, push delivery, the echo floors.

Runs inside a worker process (the client side), against a server in another process. Each
operation is timed alone with ``perf_counter_ns`` around one awaited call, after ``warmup``
untimed calls of the same kind. What is timed:

* signup / logout / login: one connection cycles signup(u_i), logout, login(u_i), logout;
* list_accounts: a page of 10 names (glob ``<prefix>u*``);
* send: 32 B (by default) to one recipient who is offline, so the message is stored pending
  and not pushed: the request/response cost, comparable with the echo rows;
* ack: one id per call, by the recipient, of messages it received as its login backlog;
* delete_account: a fresh connection signs up (untimed) and deletes itself (timed);
* deliver: send -> the moment each of the recipient's ``fanout`` live sessions yields the
  message from ``messages()`` (``deliver``: one sample per session; ``deliver_all``: until
  the last of them has it). Recipients use auto_ack=False and never ack, so no ack traffic
  (fire-and-forget on the custom protocol) overlaps the next sample; the messages stay
  pending, one store row per sample.
* read_history / mark_read / list_conversations / delete_messages: one user sends
  (untimed) ``50 + w + history`` messages of the same body to an offline peer (w =
  min(warmup, 10): the untimed calls of each op), then times, in this order: reading the
  newest page of 50 of that conversation by its id, marking it read up to its newest id,
  listing its conversations (one page), and deleting one message id per call for itself,
  oldest first (the push telling its own session is not waited for).
* resume / change_password (issue 13): the sender's connection (last: its sends are done)
  changes its password (alternating between two, so each call's ``old`` is right; the user
  has no other live session, so none ends) and so gets a new resume token; a second
  connection resumes with that token (no password), then logs out (untimed: it revokes it).
  A change costs the server two password hashes (checking the old password, hashing the
  new one: argon2 at ``--hash-cost low``, ~0.3 ms CPU each, each handed to a thread off the
  event loop): that is most of its latency and server CPU, i.e. it is dominated by the KDF.
  Calls: ``delete_account``'s count (the other account operation), at most ACCOUNT_CALLS
  per round, after at most ACCOUNT_WARM_UP untimed ones.
* lean: ``send`` again, by the lean blocking reference client (bench/refs/lean_custom.py)
  against the same server, in blocks alternating with blocks of ChatClient's in the same
  process (``run_lean``: the pairs the issue-8 targets are read from), each pair beside a
  block of the bare asyncio reference client (the event loop's share); its rows carry
  ``client: "lean"``.
* independent: ``send`` again on every transport, by a client written from
  the transport's contract with a stock library (bench/refs/independent.py), in blocks
  alternating with ChatClient's the same way (``run_independent``: issue 8's p50 targets of
  those transports are read from its pairs); grpc's pairs also have a block of a bare
  ``grpc.aio`` stub; its rows carry ``client: "independent"``.

CPU. Every row carries the CPU time per call of the server process and of this (client)
process: over the timed loop for loops of one op, and summed call by call (read just outside
each timed call) where ops alternate on one connection (signup/logout/login) or each call
needs untimed set-up (delete_account). A deliver row's CPU is per message sent, with every
receiving session's work in it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from bench.endpoints import (
    PASSWORD,
    ChatTarget,
    CpuMeter,
    chat_target,
    cpu_fields,
    process_cpu_s,
)
from bench.refs.clients import EchoClient, FloorClient, echo_client
from bench.stats import new_histogram, record_ns, summarize
from core import ChatClient

ns = time.perf_counter_ns

#: Page size asked of list_accounts.
LIST_PAGE = 10
#: Messages in the page read_history reads (the conversation holds more).
HISTORY_PAGE = 50
#: The issue-13 rows this module adds (bench/report.py shows them with the other ops).
ACCOUNT_OPS = ("resume", "change_password")
#: Timed calls of resume and of change_password per round at most (after ACCOUNT_WARM_UP
#: untimed ones): a cycle costs two password hashes and three round trips (5-20 ms on a
#: loaded 2-vCPU machine, gRPC's dearest), and runs for every transport, store and round:
#: 8 keep the full plan's cost near 5 s (40 calls a transport and store over 5 rounds).
ACCOUNT_CALLS = 8
ACCOUNT_WARM_UP = 1
#: The second password of the change_password loop (as long as PASSWORD; not a common one).
OTHER_PASSWORD = "bench-passw0rd"
#: Upper bound on any one section, so a stuck server fails the job instead of hanging it.
SECTION_TIMEOUT = 300.0


def _row(op: str, hist: HdrHistogram, **extra: Any) -> dict[str, Any]:
    return {"op": op, **summarize(hist), **extra}


class CallMeter:
    """Latency and CPU time of calls of several ops, summed call by call.

    The CPU clocks are read just outside the timed window, so reading them costs the latency
    nothing. The server's work for a call that outlasts its reply lands on the next call.
    """

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.in_process = server_pid == os.getpid()
        self.hists: dict[str, HdrHistogram] = {}
        self.cpu: dict[str, list[float]] = {}  # op -> [wall, server, client] seconds

    def _server_s(self) -> float:
        return 0.0 if self.in_process else process_cpu_s(self.server_pid)

    async def timed(self, op: str, awaitable: Awaitable[Any], *, record: bool = True) -> Any:
        """Await ``awaitable``; when ``record``, add its latency and CPU to ``op``."""
        s0, c0 = self._server_s(), time.process_time()
        t0 = ns()
        result = await awaitable
        t1 = ns()
        c1, s1 = time.process_time(), self._server_s()
        if record:
            hist = self.hists.get(op)
            if hist is None:
                hist = self.hists[op] = new_histogram()
                self.cpu[op] = [0.0, 0.0, 0.0]
            record_ns(hist, t1 - t0)
            sums = self.cpu[op]
            sums[0] += (t1 - t0) / 1e9
            sums[1] += s1 - s0
            sums[2] += c1 - c0
        return result

    def row(self, op: str, **extra: Any) -> dict[str, Any]:
        hist = self.hists.get(op) or new_histogram()
        wall, server, client = self.cpu.get(op, [0.0, 0.0, 0.0])
        cpu: dict[str, float | None] = {
            "wall_s": wall,
            "server_cpu_s": client if self.in_process else server,
            "client_cpu_s": None if self.in_process else client,
            "other_vcpus": None,  # the job's figures (bench.worker)
            "steal_vcpus": None,
        }
        return _row(op, hist, **cpu_fields(cpu, hist.get_total_count()), **extra)


async def run_ops(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Latency rows of every chat operation for one target (see the module docstring)."""
    target = chat_target(job["target"])
    counts: dict[str, int] = job["counts"]
    warm: int = job["warmup"]
    prefix: str = job["prefix"]
    body: str = job["body"]
    rows: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(SECTION_TIMEOUT):
            if counts.get("accounts", 0) or counts.get("list_accounts", 0):
                rows += await _accounts(target, counts, warm, prefix)
            recipient = f"{prefix}r"
            await target.discard(await target.user(recipient))
            sender = await target.user(f"{prefix}s")
            if counts.get("list_accounts", 0):
                pattern = f"{prefix}u*"
                rows.append(
                    await _timed_loop(
                        "list_accounts",
                        lambda: sender.list_accounts(pattern, "", LIST_PAGE),
                        warm,
                        counts["list_accounts"],
                        target.server_pid,
                    )
                )
            n_send = counts.get("send", 0)
            if n_send:
                rows.append(
                    await _timed_loop(
                        "send",
                        lambda: sender.send([recipient], body),
                        warm,
                        n_send,
                        target.server_pid,
                        body_bytes=len(body.encode()),
                    )
                )
            if n_send and counts.get("ack", 0):
                rows.append(await _acks(target, recipient, warm, warm + n_send, counts["ack"]))
            if counts.get("delete_account", 0):
                rows.append(await _deletes(target, prefix, min(warm, 10), counts["delete_account"]))
            if counts.get("history", 0):
                rows += await _history(target, prefix, body, min(warm, 10), counts["history"])
            if counts.get("delete_account", 0):
                n = min(counts["delete_account"], ACCOUNT_CALLS)
                rows += await _account_security(target, sender, min(warm, ACCOUNT_WARM_UP), n)
    finally:
        await target.aclose()
    return rows


async def _accounts(
    target: ChatTarget, counts: dict[str, int], warm: int, prefix: str
) -> list[dict[str, Any]]:
    """signup, logout, login, logout on one connection; at least LIST_PAGE accounts."""
    meter = CallMeter(target.server_pid)
    client = await target.client()
    for i in range(warm + max(counts.get("accounts", 0), LIST_PAGE)):
        name = f"{prefix}u{i:05d}"
        timed = i >= warm
        try:
            await meter.timed("signup", client.signup(name, PASSWORD), record=timed)
            await meter.timed("logout", client.logout(), record=timed)
            await meter.timed("login", client.login(name, PASSWORD), record=timed)
            await meter.timed("logout", client.logout(), record=timed)
        except Exception as exc:
            exc.add_note(f"in signup/logout/login/logout cycle {i} on one connection")
            raise
    await target.discard(client)
    if not counts.get("accounts", 0):
        return []
    return [meter.row(op) for op in ("signup", "login", "logout")]


async def _acks(
    target: ChatTarget, recipient: str, warm: int, pending: int, n: int
) -> dict[str, Any]:
    """The recipient logs in, receives its ``pending`` backlog and acks one id per call."""
    reader = await target.user(recipient, signup=False)
    ids: list[int] = []
    async for delivery in reader.messages():
        ids.append(delivery.message_id)
        if len(ids) == pending:
            break
    it = iter(ids)
    row = await _timed_loop(
        "ack", lambda: reader.ack([next(it)]), warm, min(n, len(ids) - warm), target.server_pid
    )
    rest = list(it)
    for start in range(0, len(rest), 1000):  # leave the store as we found it
        await reader.ack(rest[start : start + 1000])
    await target.discard(reader)
    return row


async def _deletes(target: ChatTarget, prefix: str, warm: int, n: int) -> dict[str, Any]:
    """A fresh connection signs up (untimed) and deletes its own account (timed)."""
    meter = CallMeter(target.server_pid)
    for i in range(warm + n):
        name = f"{prefix}d{i:04d}"
        doomed = await target.user(name)
        await meter.timed("delete_account", doomed.delete_account(name, PASSWORD), record=i >= warm)
        await target.discard(doomed)
    return meter.row("delete_account")


async def _history(
    target: ChatTarget, prefix: str, body: str, warm: int, n: int
) -> list[dict[str, Any]]:
    """The history operations of one user in a 1:1 conversation it sent HISTORY_PAGE + warm
    + n messages to (untimed; the peer stays offline): read_history (the newest page, by
    conversation id), mark_read (up to the newest id), list_conversations (one page),
    delete_messages (one id per call, for me, oldest first, after the others)."""
    peer = f"{prefix}hp"
    await target.discard(await target.user(peer))
    me = await target.user(f"{prefix}hm")
    sent = [await me.send([peer], body) for _ in range(HISTORY_PAGE + warm + n)]
    conversation, newest = sent[-1].conversation_id, sent[-1].message_id
    pid, extra = target.server_pid, {"body_bytes": len(body.encode())}

    async def read() -> None:
        page = await me.read_history(conversation_id=conversation, limit=HISTORY_PAGE)
        if len(page.messages) != HISTORY_PAGE:
            raise RuntimeError(f"read_history gave {len(page.messages)} messages, not 50")

    oldest = iter([r.message_id for r in sent])
    loops: list[tuple[str, Any]] = [
        ("read_history", read),
        ("mark_read", lambda: me.mark_read(conversation, newest)),
        ("list_conversations", lambda: me.list_conversations()),
        ("delete_messages", lambda: me.delete_messages([next(oldest)])),
    ]
    rows = [await _timed_loop(op, call, warm, n, pid, **extra) for op, call in loops]
    await target.discard(me)
    return rows


async def _account_security(
    target: ChatTarget, changer: ChatClient, warm: int, n: int
) -> list[dict[str, Any]]:
    """change_password on ``changer`` (a warm connection logged in with PASSWORD, the
    sender's: it is not used after), resume with the token it returns on another connection
    (which then logs out, untimed): the module docstring says what each costs."""
    meter = CallMeter(target.server_pid)
    resumer = await target.client()
    passwords = (PASSWORD, OTHER_PASSWORD)
    for i in range(warm + n):
        timed = i >= warm
        old, new = passwords[i % 2], passwords[(i + 1) % 2]
        try:
            changed = await meter.timed(
                "change_password", changer.change_password(old, new), record=timed
            )
            await meter.timed("resume", resumer.resume(changed.resume_token), record=timed)
            await resumer.logout()  # revokes the token, so the next change is alone again
        except Exception as exc:
            exc.add_note(f"in change_password/resume/logout cycle {i}")
            raise
    await target.discard(resumer)
    return [meter.row(op) for op in ("resume", "change_password")]


async def _timed_loop(
    op: str, call: Any, warm: int, n: int, server_pid: int, **extra: Any
) -> dict[str, Any]:
    """Time ``n`` awaited calls after ``warm`` untimed ones; CPU per op over the timed part."""
    for _ in range(warm):
        await call()
    hist = new_histogram()
    meter = CpuMeter(server_pid)
    for _ in range(n):
        t0 = ns()
        await call()
        t1 = ns()
        record_ns(hist, t1 - t0)
    return _row(op, hist, **cpu_fields(meter.elapsed(), n), **extra)


async def run_deliver(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Push-delivery latency to ``fanout`` live sessions of one recipient."""
    target = chat_target(job["target"])
    fanout: int = job["fanout"]
    warm: int = job["warmup"]
    prefix: str = job["prefix"]
    body: str = job["body"]
    per_session, all_sessions = new_histogram(), new_histogram()
    arrivals: list[int] = []
    complete = asyncio.Event()
    drains: list[asyncio.Task[None]] = []

    async def drain(client: Any) -> None:
        async for _ in client.messages():
            arrivals.append(ns())
            if len(arrivals) >= fanout:
                complete.set()

    try:
        async with asyncio.timeout(SECTION_TIMEOUT):
            recipient = f"{prefix}r"
            sessions = [await target.user(recipient)]
            for _ in range(fanout - 1):
                sessions.append(await target.user(recipient, signup=False))
            sender = await target.user(f"{prefix}s")
            drains = [asyncio.create_task(drain(s)) for s in sessions]
            meter: CpuMeter | None = None
            for i in range(warm + job["n"]):
                if i == warm:
                    meter = CpuMeter(target.server_pid)
                arrivals.clear()
                complete.clear()
                t0 = ns()
                await sender.send([recipient], body)
                async with asyncio.timeout(10.0):
                    await complete.wait()
                if i >= warm:
                    for t in arrivals:
                        record_ns(per_session, t - t0)
                    record_ns(all_sessions, max(arrivals) - t0)
            cpu = cpu_fields(meter.elapsed(), job["n"]) if meter is not None else {}
    finally:
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
        await target.aclose()
    extra = {"fanout": fanout, "body_bytes": len(body.encode()), **cpu}
    return [_row("deliver", per_session, **extra), _row("deliver_all", all_sessions, **extra)]


async def run_echo(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Round-trip latency of one reference echo server, one request in flight."""
    target = job["target"]
    client = echo_client(target["ref"], tuple(target["address"]))
    payload: bytes = job["body"].encode()
    await client.connect()
    try:
        if await client.echo(payload) != payload:
            raise RuntimeError(f"{target['ref']} did not echo the payload")
        hist = new_histogram()
        n, warm = job["n"], job["warmup"]
        if isinstance(client, FloorClient):  # the blocking floor: no event loop in the way
            call = client.echo_blocking
            for _ in range(warm):
                call(payload)
            meter = CpuMeter(target["server_pid"])
            for _ in range(n):
                t0 = ns()
                call(payload)
                t1 = ns()
                record_ns(hist, t1 - t0)
        else:
            for _ in range(warm):
                await client.echo(payload)
            meter = CpuMeter(target["server_pid"])
            for _ in range(n):
                t0 = ns()
                await client.echo(payload)
                t1 = ns()
                record_ns(hist, t1 - t0)
        cpu = cpu_fields(meter.elapsed(), n)
    finally:
        await client.close()
    return [_row("echo", hist, body_bytes=len(payload), **cpu)]


#: Pairs of blocks (one by the lean client, one by ChatClient) the lean step alternates in
#: one round, at most: 4 a round, so the full plan's 2,000 lean sends a round make blocks of
#: 500 and its 5 rounds 20 pairs, whose median's 95 % interval runs from the 6th to the 15th
#: of the 20 per-pair ratios (with 10 pairs: from the 2nd to the 9th). The sends are the same
#: whatever the count, so more pairs cost only their lead-ins: a round of the step took
#: 1.3-1.7 s with 2 pairs and with 4 (issue 8, load 2.4). Each block is still long, because
#: each switch of client costs the one that touches more code more (its caches are cold
#: again), which no real client pays: in ad hoc runs the CPU ratio read 1.27-1.34 in blocks
#: of 100-250 and 1.19-1.24 in blocks of 1,000 before the lead-in below; with it, ad hoc
#: blocks of 400 read 1.25-1.30 at load 2.5 (the reference run's blocks of 1,000: 1.25).
LEAN_PAIRS = 4
#: Fewer pairs when a round has fewer sends: each block at least this many timed sends (so
#: its p50 and its CPU per send are not one scheduler hiccup), and at least 2 pairs (the
#: quick plan's 200 sends a round: 2 pairs of 100, as before LEAN_PAIRS was 4).
LEAN_BLOCK_MIN = 100
#: Untimed sends at the start of every block: the client just switched, and the first calls
#: after a switch pay for caches the other client evicted (both clients pay it alike; it is
#: kept out of the figures so a block measures the steady call, as the other latency rows do).
LEAN_LEAD_IN = 3
#: Wall time of the paired blocks at most: past it the step stops after the current pair
#: (with fewer pairs: the row says how many); a stuck server fails on the clients' timeouts.
LEAN_BUDGET_S = 120.0


def lean_blocks(n: int, pairs: int | None = None) -> list[int]:
    """The sizes of the blocks ``n`` timed sends of one client are split into, one a pair:
    ``pairs`` of them (default: LEAN_PAIRS, fewer for small ``n``), as even as can be."""
    if n <= 0:
        return []
    k = pairs or max(2, min(LEAN_PAIRS, n // LEAN_BLOCK_MIN))
    k = max(1, min(k, n))
    q, r = divmod(n, k)
    return [q + (1 if i < r else 0) for i in range(k)]


def _sum_cpu(parts: list[dict[str, float | None]]) -> dict[str, float | None]:
    """CpuMeter.elapsed() figures of several blocks as one: seconds add up, ``other_vcpus`` and
    ``steal_vcpus`` (rates) are their wall-weighted means; a figure missing from any block is
    None."""
    out: dict[str, float | None] = {}
    for key in dict.fromkeys(k for part in parts for k in part):
        values = [part.get(key) for part in parts]
        if key in ("other_vcpus", "steal_vcpus"):
            walls = [part.get("wall_s") or 0.0 for part in parts]
            if any(v is None for v in values) or sum(walls) <= 0:
                out[key] = None
            else:
                total = sum(float(v or 0.0) * w for v, w in zip(values, walls, strict=True))
                out[key] = round(total / sum(walls), 3)
        else:
            present = [float(v) for v in values if v is not None]
            out[key] = sum(present) if len(present) == len(values) else None
    return out


def _own_cpu(meter: CpuMeter, start: float) -> dict[str, float | None]:
    """``meter.elapsed()`` with this process's CPU from the clock read at ``start`` (just
    before the block's loop) to now: reading the meter itself (psutil, /proc) costs ~0.1 ms
    of this process's CPU inside its own window, 2 µs a send over a block of 50."""
    end = time.process_time()
    cpu = meter.elapsed()
    cpu["client_cpu_s"] = end - start
    return cpu


def _block_figures(hist: HdrHistogram, cpu: dict[str, float | None], n: int) -> dict[str, Any]:
    """One block's p50 and CPU per send (µs), for its entry in ``pairs``."""
    fields = cpu_fields(cpu, n)
    return {
        "p50_us": summarize(hist, with_hist=False)["p50_us"],
        "cpu_us": fields["client_cpu_us_per_op"],
        "server_cpu_us": fields["server_cpu_us_per_op"],
        "other_vcpus": cpu.get("other_vcpus"),
    }


@dataclass(frozen=True)
class Side:
    """One client of a paired-blocks step: its name in ``pairs`` (``lean``, ``independent``,
    ``chat``, ``bare``, ``echo``, ``contract``) and one send with no arguments, a blocking call or
    (``awaited``) a coroutine function; ``server_pid``: the server it talks to, when not the
    step's (the echo reference's)."""

    name: str
    send: Callable[[], Any]
    awaited: bool
    server_pid: int | None = None


async def paired_blocks(
    ref: Side,
    chat: Side,
    beside: Sequence[Side],
    sizes: list[int],
    *,
    seed: str,
    warmup: int,
    server_pid: int,
) -> tuple[list[dict[str, Any]], HdrHistogram, list[dict[str, float | None]]]:
    """Blocks of sends by a reference client ``ref`` and by ChatClient (``chat``) back to
    back, one pair per entry of ``sizes``, which goes first drawn with ``seed`` (balanced:
    half the pairs each way); beside each pair, just before or just after it (drawn, balanced,
    for each apart), a block of each client of ``beside``. Every client first makes ``warmup``
    untimed sends, every block LEAN_LEAD_IN more. Returns the pairs (:func:`_pair`), ``ref``'s
    blocks pooled in one histogram and its blocks' CPU figures."""
    import random

    rng = random.Random(seed)
    firsts = ([ref.name, chat.name] * len(sizes))[: len(sizes)]
    rng.shuffle(firsts)
    after: dict[str, list[bool]] = {}
    for side in beside:
        after[side.name] = ([False, True] * len(sizes))[: len(sizes)]
        rng.shuffle(after[side.name])
    lead_in = min(warmup, LEAN_LEAD_IN)
    sides = {side.name: side for side in (ref, chat, *beside)}
    pooled = new_histogram()
    ref_cpu: list[dict[str, float | None]] = []

    async def block(side: Side, size: int) -> dict[str, Any]:
        send = side.send
        hist = new_histogram()
        if side.awaited:
            for _ in range(lead_in):
                await send()
            meter = CpuMeter(side.server_pid or server_pid)
            c0 = time.process_time()
            for _ in range(size):
                t0 = ns()
                await send()
                t1 = ns()
                record_ns(hist, t1 - t0)
        else:
            for _ in range(lead_in):
                send()
            meter = CpuMeter(side.server_pid or server_pid)
            c0 = time.process_time()
            for _ in range(size):
                t0 = ns()
                send()
                t1 = ns()
                record_ns(hist, t1 - t0)
        cpu = _own_cpu(meter, c0)
        if side is ref:
            pooled.add(hist)
            ref_cpu.append(cpu)
        return _block_figures(hist, cpu, size)

    for side in sides.values():  # each client warms up once, before any block
        for _ in range(warmup):
            if side.awaited:
                await side.send()
            else:
                side.send()
    pairs: list[dict[str, Any]] = []
    deadline = time.monotonic() + LEAN_BUDGET_S
    for i, (size, first) in enumerate(zip(sizes, firsts, strict=True)):
        order = [ref.name, chat.name] if first == ref.name else [chat.name, ref.name]
        for side in beside:
            order = [*order, side.name] if after[side.name][i] else [side.name, *order]
        mine = {who: await block(sides[who], size) for who in order}
        pairs.append(_pair(first, size, {who: mine[who] for who in sides}, order))
        if time.monotonic() > deadline:
            break
    return pairs, pooled, ref_cpu


async def run_lean(job: dict[str, Any]) -> list[dict[str, Any]]:
    """``send`` by the lean blocking reference client and by ChatClient, in alternating
    blocks in this one process, against one custom server (issue 8 read as issue 12 asks),
    with a block of the bare asyncio reference client beside each pair.

    The round's ``n`` timed sends of each client are split into ``pairs`` blocks
    (:func:`lean_blocks`); pair i is a block of the lean client and a block of ChatClient of
    the same size, back to back, which goes first drawn at random (balanced: half the pairs
    each way: :func:`paired_blocks`). Both clients send the same body to the same offline
    recipient (so the store grows alike under both), each from an account of its own
    (``<prefix>s``: the lean one, as before; ``<prefix>c``: ChatClient, opened with the
    transport's client as ``run_ops`` opens it), with the same arguments (the recipients as
    one tuple). A disturbance, a slower server or a bigger store lands on both members of a
    pair, so the per-pair ratio cancels what the two unpaired rows (different steps,
    processes and moments) cannot.

    Each pair also has a block of as many sends by ``BareAsyncClient`` (``<prefix>b``: the
    same codec under a bare asyncio Protocol, a future per call), just before or just after
    the pair (drawn at random, balanced): the event loop's share of ChatClient's extra cost,
    read apart from ChatClient's own (``bare_*`` in ``pairs``; no target of its own).

    The lean client's calls are blocking on purpose (a client with no event loop in its
    way): while they run this worker's loop is idle, and ChatClient has nothing in flight
    (its recipient is offline: no pushes). Returns one row, as before: the lean client's
    (``client: "lean"``, its blocks pooled), carrying ``pairs`` (bench/SCHEMA.md).
    """
    from bench.refs.lean_custom import BareAsyncClient, LeanCustomClient

    spec = job["target"]
    address = (spec["address"][0], int(spec["address"][1]))
    prefix, body = job["prefix"], job["body"]
    recipient = (f"{prefix}r",)
    target = chat_target(spec)
    owner = LeanCustomClient(address)
    owner.connect()
    owner.signup(recipient[0], PASSWORD)
    owner.close()
    lean = LeanCustomClient(address)
    lean.connect()
    bare = BareAsyncClient(address)
    try:
        async with asyncio.timeout(SECTION_TIMEOUT):
            lean.signup(f"{prefix}s", PASSWORD)
            chat = await target.user(f"{prefix}c")
            await bare.connect()
            await bare.signup(f"{prefix}b", PASSWORD)
            pairs, pooled, cpus = await paired_blocks(
                Side("lean", lambda: lean.send(recipient, body), awaited=False),
                Side("chat", lambda: chat.send(recipient, body), awaited=True),
                [Side("bare", lambda: bare.send(recipient, body), awaited=True)],
                lean_blocks(int(job["n"]), job.get("pairs")),
                seed=f"lean-pairs-{prefix}",
                warmup=int(job["warmup"]),
                server_pid=int(spec["server_pid"]),
            )
    finally:
        lean.close()
        bare.close()
        await target.aclose()
    n = sum(p["n"] for p in pairs)
    cpu = cpu_fields(_sum_cpu(cpus), n)
    extra = {"client": "lean", "body_bytes": len(body.encode()), "pairs": pairs}
    return [_row("send", pooled, **extra, **cpu)]


async def run_independent(job: dict[str, Any]) -> list[dict[str, Any]]:
    """``send`` by a client written from the transport's contract with a stock library
    (bench/refs/independent.py: websocket, grpc-stream, grpc) and by ChatClient, in
    alternating blocks in this one process against one server: :func:`run_lean`'s design
    (:func:`paired_blocks`, :func:`lean_blocks`), issue 8's "every p50 within 15 % of an
    independent client in the same session" for the transports a stranger would implement
    with a stock library.

    The independent client is blocking (the library's synchronous API: no event loop in its
    way), from its own account (``<prefix>i``); ChatClient from ``<prefix>c``; both send the
    same body to the same offline recipient (``<prefix>r``, signed up by ChatClient, untimed).
    Where the transport has a bare asyncio client (custom: the codec under a bare asyncio
    Protocol; grpc: a bare ``grpc.aio`` stub making the same unary calls; ``<prefix>b``), a
    block of it stands beside each pair (``bare_*`` in ``pairs``): the event loop's (and the
    library's asyncio layer's) share of ChatClient's gap, apart from ours.
    Where the job names the transport's reference server (``echo``: its registry entry's
    ``reference``, started beside the transport's server on the same vCPU), a block of its
    echo client stands beside each pair too (``echo_*``): issue 10's floor, paired with
    ChatClient the way issue 8's clients are, so the ratio cancels the machine's drift
    between steps (bench/targets.py reads it).
    Where the job names a server of the transport's contract with no chat behind it
    (``contract``: bench.refs.CONTRACT_FLOORS, e.g. bench/refs/null_chat.py), a block of the
    same bare asyncio client against it stands beside each pair too (``contract_*``): what the
    contract itself costs over the echo, before any server does work.
    Returns one row: the independent client's (``client: "independent"``, ``client_impl``
    naming it, its blocks pooled), carrying ``pairs`` (bench/SCHEMA.md)."""
    from bench.refs.independent import INDEPENDENT
    from bench.refs.independent_aio import BARE

    spec = job["target"]
    transport = spec["transport"]
    address = (spec["address"][0], int(spec["address"][1]))
    prefix, body = job["prefix"], job["body"]
    recipient = f"{prefix}r"
    recipients = (recipient,)
    factory = INDEPENDENT[transport]
    target = chat_target(spec)
    independent = None
    bare = BARE[transport]() if transport in BARE else None
    echo = job.get("echo")  # the transport's reference server, running beside it
    echoer = None if echo is None else echo_client(echo["ref"], tuple(echo["address"]))
    contract = job.get("contract")  # its contract served with no chat behind it (null_*)
    floor = BARE[transport]() if contract is not None and transport in BARE else None
    try:
        async with asyncio.timeout(SECTION_TIMEOUT):
            await target.discard(await target.user(recipient))
            independent = factory(address, f"{prefix}i", recipient, body)
            chat = await target.user(f"{prefix}c")
            beside = []
            if bare is not None:
                await bare.open(address, f"{prefix}b", recipient, body)
                beside.append(Side("bare", bare.send, awaited=True))
            if echo is not None and echoer is not None:
                beside.append(await _echo_side(echoer, echo, body.encode()))
            if contract is not None and floor is not None:
                await floor.open(tuple(contract["address"]), f"{prefix}n", recipient, body)
                pid = int(contract["server_pid"])
                beside.append(Side("contract", floor.send, awaited=True, server_pid=pid))
            pairs, pooled, cpus = await paired_blocks(
                Side("independent", independent.send, awaited=False),
                Side("chat", lambda: chat.send(recipients, body), awaited=True),
                beside,
                lean_blocks(int(job["n"]), job.get("pairs")),
                seed=f"independent-pairs-{prefix}",
                warmup=int(job["warmup"]),
                server_pid=int(spec["server_pid"]),
            )
    finally:
        if independent is not None:
            independent.close()
        if bare is not None:
            await bare.close()
        if echoer is not None:
            await echoer.close()
        if floor is not None:
            await floor.close()
        await target.aclose()
    n = sum(p["n"] for p in pairs)
    extra = {
        "client": "independent",
        "client_impl": factory.LIBRARY,
        **({"bare_impl": bare.LIBRARY} if bare is not None else {}),
        "body_bytes": len(body.encode()),
        "pairs": pairs,
    }
    return [_row("send", pooled, **extra, **cpu_fields(_sum_cpu(cpus), n))]


async def _echo_side(client: EchoClient, echo: dict[str, Any], payload: bytes) -> Side:
    """The reference echo's client as a side of the paired blocks: issue 10's floor, timed
    the way its own latency row times it (:func:`run_echo`: the same client and payload)."""
    await client.connect()
    if await client.echo(payload) != payload:
        raise RuntimeError(f"{echo['ref']} did not echo the payload")
    return Side(
        "echo", lambda: client.echo(payload), awaited=True, server_pid=int(echo["server_pid"])
    )


def _pair(
    first: str, n: int, blocks: dict[str, dict[str, Any]], order: list[str]
) -> dict[str, Any]:
    """One entry of a paired row's ``pairs`` (bench/SCHEMA.md): ``<who>_p50_us``,
    ``<who>_cpu_us``, ``<who>_server_cpu_us`` of each client's block."""
    out: dict[str, Any] = {"first": first, "n": n, "order": order}
    for figure in ("p50_us", "cpu_us", "server_cpu_us"):
        for who, block in blocks.items():
            out[f"{who}_{figure}"] = block[figure]
    others = [b["other_vcpus"] for b in blocks.values() if b["other_vcpus"] is not None]
    out["other_vcpus"] = max(others) if others else None
    return out


__all__ = [
    "ACCOUNT_CALLS",
    "ACCOUNT_OPS",
    "HISTORY_PAGE",
    "LEAN_PAIRS",
    "LIST_PAGE",
    "CallMeter",
    "Side",
    "lean_blocks",
    "paired_blocks",
    "run_deliver",
    "run_echo",
    "run_independent",
    "run_lean",
    "run_ops",
]
