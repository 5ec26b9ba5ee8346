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
  against the same server; its rows carry ``client: "lean"``.

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
from collections.abc import Awaitable
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
from bench.refs.clients import FloorClient, echo_client
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
            "other_vcpus": None,  # the job's figure (bench.worker)
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


async def run_lean(job: dict[str, Any]) -> list[dict[str, Any]]:
    """``send`` by the lean blocking reference client against a custom server.

    Blocking calls on purpose: the worker runs one job at a time, and the point of this row is
    a client with no event loop in its way. Same accounts, body and recipient (offline) as the
    bench's own send row.
    """
    from bench.refs.lean_custom import LeanCustomClient

    target = job["target"]
    address = (target["address"][0], int(target["address"][1]))
    prefix, body = job["prefix"], job["body"]
    recipient = (f"{prefix}r",)
    owner = LeanCustomClient(address)
    owner.connect()
    owner.signup(recipient[0], PASSWORD)
    owner.close()
    client = LeanCustomClient(address)
    client.connect()
    try:
        client.signup(f"{prefix}s", PASSWORD)
        send = client.send
        for _ in range(job["warmup"]):
            send(recipient, body)
        hist = new_histogram()
        n = job["n"]
        meter = CpuMeter(int(target["server_pid"]))
        for _ in range(n):
            t0 = ns()
            send(recipient, body)
            t1 = ns()
            record_ns(hist, t1 - t0)
        cpu = cpu_fields(meter.elapsed(), n)
    finally:
        client.close()
    return [_row("send", hist, client="lean", body_bytes=len(body.encode()), **cpu)]


__all__ = [
    "ACCOUNT_CALLS",
    "ACCOUNT_OPS",
    "HISTORY_PAGE",
    "LIST_PAGE",
    "CallMeter",
    "run_deliver",
    "run_echo",
    "run_lean",
    "run_ops",
]
