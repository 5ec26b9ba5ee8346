"""The attacks of the hostile scene (``bench.hostile``), each bounded in count and in time.

Each worker runs in its own process (its own event loop and CPU share), started by the scene
with a *plan* (plain numbers, scaled by ``--scale``), and follows one protocol: set up its
sessions, put ``("ready", name)`` on the queue, wait for the ``go`` event, attack for
``plan["seconds"]``, put ``("result", name, figures)``. Figures are JSON-ready; every worker
that sends messages returns ``acked`` (recipient -> ids the server acknowledged) and ``seen``
(recipient -> ids its live sessions received), from which the scene proves that no
acknowledged message was lost.

* ``canary``: the pair that must not notice anything (a message every ~20 ms, push latency
  timed from the intended send time).
* ``relogin``: the real user logging in again while guessers try its password (time to a
  correct login, and to its WELCOME); ``storm``: 1,000 simultaneous connects. Each in its own
  process, so a busy worker's loop is not part of what they measure.
* ``flood``: ``bench.hostile_raw.hold_idle`` (idle connections, partial frames).
* ``attacks``: ACK flood, slow consumers, fan-out to readers that never read, login guessers,
  ``list_accounts`` scans over many accounts.
* ``grpc``: sessions on gRPC sending to each other open-loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench.hostile_raw import RawClient, attacker_host, cpu_seconds, hold_idle, raise_fd_limit
from transports import registry

PASSWORD = "soak-password"  # every seeded account's (bench.hostile seeds them)
BODY_64K = "x" * (64 * 1024)
#: A send not answered within this many seconds counts as unanswered.
SEND_TIMEOUT = 30.0
#: Attempts at setting up one session before the scene gives up on it.
SETUP_TRIES = 6
#: Seconds an attack may run past the end of the window to finish what it started.
GRACE = 10.0
#: Times a sender of the attacks logs in again after the server ended its session.
MAX_REOPENS = 20
#: The canary's last message, sent after the attacks: is the canary still answered?
LAST = "0:last"
Address = tuple[str, int]


def _error_name(exc: BaseException) -> str:
    """A short class for an exception: its type and the start of its message."""
    text = re.sub(r"\d+", "N", str(exc).split(":")[0])[:60]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _ids(acked: dict[str, list[int]]) -> dict[str, list[int]]:
    return {name: sorted(ids) for name, ids in acked.items()}


async def _wait(event: Any, timeout: float) -> bool:
    """Wait for a multiprocessing Event without blocking the loop."""
    return await asyncio.to_thread(event.wait, timeout)


async def _retrying(make: Callable[[], Awaitable[Any]], tries: int = SETUP_TRIES) -> Any:
    """``make()``, tried again after a pause while the server refuses (it may shed load while
    the other workers set up; a session the scene could not set up would weaken it)."""
    for attempt in range(tries):
        try:
            return await make()
        except Exception:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


async def _open(transport: str, address: Address, user: str) -> Any:
    """A ChatClient of ``transport`` logged in as ``user`` (set-up: retried)."""

    async def attempt() -> Any:
        client = registry.get(transport).open_client(address)
        try:
            await client.connect()
            await client.login(user, PASSWORD)
        except BaseException:
            await client.close()
            raise
        return client

    return await _retrying(attempt)


# -- the canary ---------------------------------------------------------------------------------
async def canary(plan: dict[str, Any], address: Address, ready: Any, stop: Any) -> dict[str, Any]:
    """The canary pair and the real user's logins, until ``stop`` is set."""
    sender = await _open("custom", address, "canary-a")
    receiver = await _open("custom", address, "canary-b")
    sent_at: dict[int, float] = {}  # seq -> perf_counter of the intended send
    scheduled: list[tuple[int, float]] = []  # (seq, wall time of the intended send)
    samples: dict[int, float] = {}  # seq -> push latency (s)
    started: dict[int, float] = {}  # seq -> seconds from the intended send to its start
    answered: dict[int, float] = {}  # seq -> seconds from its start to SENT
    acked: list[int] = []
    seen: list[int] = []
    failures: collections.Counter[str] = collections.Counter()
    tasks: set[asyncio.Task[None]] = set()
    last_seen = asyncio.Event()

    async def receive() -> None:
        async for delivery in receiver.messages():
            seen.append(delivery.message_id)
            seq = int(delivery.body.split(":", 1)[0])
            if seq in sent_at:
                samples[seq] = time.perf_counter() - sent_at[seq]
            elif delivery.body == LAST:
                last_seen.set()

    async def send(seq: int) -> None:
        # (where a late push spent its time: this process's own lateness before the send,
        # then the SENT round trip; the push latency itself is timed from the intended send)
        began = time.perf_counter()
        started[seq] = began - sent_at[seq]
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                result = await sender.send(["canary-b"], f"{seq}:canary")
            answered[seq] = time.perf_counter() - began
            acked.append(result.message_id)
        except Exception as exc:
            failures[_error_name(exc)] += 1

    reader = asyncio.create_task(receive())
    ready.put(("ready", "canary"))
    seq, interval = 0, plan["canary_interval"]
    next_at = time.perf_counter()
    while not stop.is_set():
        seq += 1
        sent_at[seq] = next_at
        scheduled.append((seq, time.time()))
        task = asyncio.create_task(send(seq))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    # the end: is the canary still answered?
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SEND_TIMEOUT):
            await asyncio.gather(*tasks)
    answered_after = False
    with contextlib.suppress(Exception):
        async with asyncio.timeout(10.0):
            result = await sender.send(["canary-b"], LAST)
            acked.append(result.message_id)
            await last_seen.wait()
            answered_after = True
    for client in (sender, receiver):
        await client.close()
    reader.cancel()
    return {
        "scheduled": scheduled,
        "latency": {str(k): v for k, v in samples.items()},
        "send_late": {str(k): v for k, v in started.items()},
        "sent_in": {str(k): v for k, v in answered.items()},
        "failures": dict(failures),
        "answered_after": answered_after,
        "acked": {"canary-b": sorted(acked)},
        "seen": {"canary-b": sorted(seen)},
    }


async def relogins(plan: dict[str, Any], address: Address, ready: Any, stop: Any) -> dict[str, Any]:
    """The real user logging in again (correct password) every ``relogin_every`` seconds from
    127.0.0.1 while others guess it, until ``stop`` is set. In its own process, so what it
    measures does not include the canary's own work (the time should be the server's)."""
    # (wall, seconds or None, outcome, seconds to WELCOME or None)
    logins: list[tuple[float, float | None, str, float | None]] = []

    async def relogin() -> None:
        while not stop.is_set():
            started, wall = time.perf_counter(), time.time()
            client = registry.get("custom").open_client(address)
            connected: float | None = None  # seconds to WELCOME (where a slow login waited)
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await client.connect()
                    connected = time.perf_counter() - started
                    await client.login("canary-a", PASSWORD)
                logins.append((wall, time.perf_counter() - started, "ok", connected))
            except Exception as exc:
                stage = "connecting" if connected is None else "logging in"
                logins.append((wall, None, f"{_error_name(exc)} ({stage})", connected))
            finally:
                with contextlib.suppress(Exception):
                    await client.close()
            await asyncio.sleep(plan["relogin_every"])

    ready.put(("ready", "relogin"))
    task = asyncio.create_task(relogin())
    await asyncio.to_thread(stop.wait)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return {"logins": logins}


async def storm_worker(plan: dict[str, Any], address: Address, ready: Any, go: Any) -> dict:
    """The connect storm in its own process, so its 10 s deadline runs on a loop that does
    nothing else (in the attacks' process it shared a loop with the ACK flood and the scans)."""
    raise_fd_limit()
    ready.put(("ready", "storm"))
    await _wait(go, 600)
    return {"connect_storm": await connect_storm(plan, address, plan["seconds"] / 3)}


# -- the attacks on the custom transport -------------------------------------------------------
async def _raw_login(address: Address, user: str, host: int) -> RawClient:
    """A raw connection from an attacker address, logged in as ``user`` (set-up: retried)."""

    async def attempt() -> RawClient:
        client = await RawClient.open(address, attacker_host(host))
        try:
            await client.hello()
            if not await client.login(user, PASSWORD):
                raise ConnectionError(f"{user} could not log in")
        except BaseException:
            client.close()
            raise
        return client

    return await _retrying(attempt)


async def _bounded(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)


async def ack_flood(plan: dict[str, Any], flooder: RawClient, end: float) -> dict[str, Any]:
    """Rounds of ``ack_frames`` ACKs of 1,024 ids in one write, each followed by a PING: the
    PONG's delay is how long the server took to get through the flood."""
    rounds, frames = plan["ack_rounds"], plan["ack_frames"]
    took: list[float | None] = []
    outcome = "ok" if rounds else "not run"
    data = b""
    for r in range(rounds):
        data = flooder.ack_frames(frames, 1024, 1 + r * frames * 1024)
        started = time.perf_counter()
        try:
            flooder.write(data)
            await flooder.ping(timeout=max(5.0, end - time.monotonic() + GRACE))
            took.append(time.perf_counter() - started)
        except Exception as exc:
            took.append(None)
            outcome = _error_name(exc)
            break
        await asyncio.sleep(max(0.0, (end - time.monotonic()) / (rounds - r)))
    return {"frames_per_round": frames, "bytes_per_round": len(data), "rounds": took,
            "outcome": outcome}  # fmt: skip


class Reopening:
    """A logged-in ChatClient that logs in again (at most ``MAX_REOPENS`` times) when the
    server ended its session: an attacker whose connection is cut comes back."""

    def __init__(self, address: Address, user: str) -> None:
        self.address, self.user = address, user
        self.client: Any = None
        self.reopens = 0
        self._lock = asyncio.Lock()

    async def open(self) -> Reopening:
        self.client = await _open("custom", self.address, self.user)
        return self

    async def call(self, method: str, *args: Any) -> Any:
        """``client.<method>(*args)``; after a ConnectionError, the next call reconnects."""
        client = self.client
        if not client.logged_in and self.reopens < MAX_REOPENS:
            async with self._lock:
                if self.client is client:
                    self.reopens += 1
                    with contextlib.suppress(Exception):
                        await client.close()
                    self.client = await _open("custom", self.address, self.user)
        return await getattr(self.client, method)(*args)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()


async def _send_all(
    client: Reopening, jobs: list[tuple[list[str], str]], end: float, in_flight: int
) -> tuple[dict[str, list[int]], collections.Counter[str], int]:
    """Send each (recipients, body) with at most ``in_flight`` at once, until ``end``."""
    acked: dict[str, list[int]] = collections.defaultdict(list)
    failures: collections.Counter[str] = collections.Counter()
    skipped = 0

    async def one(recipients: list[str], body: str) -> None:
        nonlocal skipped
        if time.monotonic() > end:
            skipped += 1
            return
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                result = await client.call("send", recipients, body)
            for name in recipients:
                if name not in result.unknown_recipients:
                    acked[name].append(result.message_id)
        except Exception as exc:
            failures[_error_name(exc)] += 1

    await _bounded([functools.partial(one, *job) for job in jobs], in_flight)
    return acked, failures, skipped


async def slow_consumers(
    plan: dict[str, Any], sender: Reopening, names: list[str], end: float
) -> dict[str, Any]:
    """``slow_messages`` 64 KiB bodies to each consumer that never reads."""
    jobs = [([name], BODY_64K) for _ in range(plan["slow_messages"]) for name in names]
    acked, failures, skipped = await _send_all(sender, jobs, end, in_flight=8)
    return {
        "consumers": len(names),
        "sent_ok": sum(map(len, acked.values())),
        "failures": dict(failures),
        "not_sent_in_time": skipped,
        "acked": _ids(acked),
    }


async def fan_out(
    plan: dict[str, Any], sender: Reopening, names: list[str], end: float
) -> dict[str, Any]:
    """``fan_sends`` 64 KiB messages to every recipient, spread over the window."""
    acked: dict[str, list[int]] = collections.defaultdict(list)
    failures: collections.Counter[str] = collections.Counter()
    sends = plan["fan_sends"]
    for n in range(sends):
        part, fails, _ = await _send_all(sender, [(names, BODY_64K)], end, in_flight=1)
        for name, ids in part.items():
            acked[name] += ids
        failures.update(fails)
        await asyncio.sleep(max(0.0, (end - time.monotonic()) / (sends - n) / 2))
    return {"recipients": len(names), "sends": sends, "failures": dict(failures),
            "acked": _ids(acked)}  # fmt: skip


async def guessers(plan: dict[str, Any], address: Address, end: float) -> dict[str, Any]:
    """``guessers`` connections guessing canary-a's password, each on a fresh connection."""
    outcomes: collections.Counter[str] = collections.Counter()
    answer_times: list[float] = []

    async def guess(k: int) -> None:
        for n in range(plan["guesses_each"]):
            if time.monotonic() > end:
                return
            started = time.perf_counter()
            client: RawClient | None = None
            try:
                client = await RawClient.open(address, attacker_host(k * 7 + n))
                await client.hello()
                ok = await client.login("canary-a", f"guess-{k}-{n}", timeout=60.0)
                outcomes["let in (!)" if ok else "refused"] += 1
                answer_times.append(time.perf_counter() - started)
            except Exception as exc:
                outcomes[_error_name(exc)] += 1
                await asyncio.sleep(0.05)
            finally:
                if client is not None:
                    client.close()

    await asyncio.gather(*(guess(k) for k in range(plan["guessers"])))
    answer_times.sort()
    return {
        "guessers": plan["guessers"],
        "outcomes": dict(outcomes),
        "answered": len(answer_times),
        "p50_answer_s": answer_times[len(answer_times) // 2] if answer_times else None,
    }


async def scans(plan: dict[str, Any], scanner: Reopening, end: float) -> dict[str, Any]:
    """``scan_in_flight`` list_accounts calls with a pattern that matches nothing, repeated."""
    took: list[float] = []
    failures: collections.Counter[str] = collections.Counter()
    per_loop = plan["scan_calls"] // max(1, plan["scan_in_flight"])

    async def loop() -> None:
        for _ in range(per_loop):
            if time.monotonic() > end:
                return
            started = time.perf_counter()
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await scanner.call("list_accounts", "zz*no?match*")
                took.append(time.perf_counter() - started)
            except Exception as exc:
                failures[_error_name(exc)] += 1

    await asyncio.gather(*(loop() for _ in range(plan["scan_in_flight"])))
    took.sort()
    return {"calls": len(took), "failures": dict(failures), "accounts": plan["accounts"],
            "p50_ms": 1000 * took[len(took) // 2] if took else None,
            "p99_ms": 1000 * took[int(len(took) * 0.99)] if took else None}  # fmt: skip


async def connect_storm(plan: dict[str, Any], address: Address, delay: float) -> dict[str, Any]:
    """``storm`` connections opened at once; each must get WELCOME or a refusal in 10 s."""
    await asyncio.sleep(delay)
    outcomes: collections.Counter[str] = collections.Counter()
    clients: list[RawClient] = []

    async def one(i: int) -> None:
        try:
            client = await RawClient.open(address, attacker_host(i))
        except OSError as exc:
            outcomes[f"connect failed ({type(exc).__name__})"] += 1
            return
        clients.append(client)
        try:
            await client.hello(timeout=10.0)
            outcomes["welcomed"] += 1
        except TimeoutError:
            outcomes["never accepted (no answer in 10 s)"] += 1
        except ConnectionError as exc:
            outcomes["refused" if str(exc).startswith("refused") else "closed by the server"] += 1
        except Exception as exc:  # e.g. closed before HELLO could be sent (codec phase closed)
            outcomes[f"closed by the server ({type(exc).__name__})"] += 1

    await asyncio.gather(*(one(i) for i in range(plan["storm"])))
    for client in clients:
        client.close()
    return {"connects": plan["storm"], "outcomes": dict(outcomes)}


async def attacks(plan: dict[str, Any], address: Address, ready: Any, go: Any) -> dict[str, Any]:
    """Every attack on the custom transport at once (module docstring)."""
    raise_fd_limit()
    flooder = await _raw_login(address, "flooder", 0)
    slow_names = [f"slow-{i}" for i in range(plan["slow_consumers"])]
    fan_names = [f"fan-{i:03d}" for i in range(plan["fan_recipients"])]
    never_read: list[RawClient] = []
    for offset, names in ((10, slow_names), (40, fan_names)):
        logins = [
            functools.partial(_raw_login, address, n, offset + i) for i, n in enumerate(names)
        ]
        for client in await _bounded(logins, 16):
            if isinstance(client, BaseException):
                raise client
            client.stop_reading()
            never_read.append(client)
    slow_sender = await Reopening(address, "slow-sender").open()
    fan_sender = await Reopening(address, "fan-sender").open()
    scanner = await Reopening(address, "scanner").open()
    ready.put(("ready", "attacks"))
    await _wait(go, 600)
    end = time.monotonic() + plan["seconds"]
    parts = await asyncio.gather(
        ack_flood(plan, flooder, end),
        slow_consumers(plan, slow_sender, slow_names, end),
        fan_out(plan, fan_sender, fan_names, end),
        guessers(plan, address, end),
        scans(plan, scanner, end),
        return_exceptions=True,
    )
    labels = ("ack_flood", "slow_consumers", "fan_out", "guessers", "scans")
    result: dict[str, Any] = {}
    for name, part in zip(labels, parts, strict=True):
        result[name] = part if isinstance(part, dict) else {"crashed": repr(part)}
    # Hold every connection to the end of the window: the server's timers (stall, idle)
    # get the whole window to act on the readers that never read.
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    result["never_read_closed_by_server"] = sum(1 for c in never_read if c.server_closed())
    result["never_read_connections"] = len(never_read)
    result["senders_reconnected"] = slow_sender.reopens + fan_sender.reopens + scanner.reopens
    for client in (slow_sender, fan_sender, scanner):
        await client.close()
    for client in [flooder, *never_read]:
        client.close()
    return result


# -- load on gRPC -------------------------------------------------------------------------------
async def grpc_load(plan: dict[str, Any], address: Address, ready: Any, go: Any) -> dict[str, Any]:
    """``grpc_sessions`` sessions sending to each other at ``grpc_rate`` sends/s in all."""
    names = [f"grpc-{i:04d}" for i in range(plan["grpc_sessions"])]
    opened = await _bounded([functools.partial(_open, "grpc", address, n) for n in names], 16)
    clients = {n: c for n, c in zip(names, opened, strict=True) if not isinstance(c, BaseException)}
    setup_failures = collections.Counter(
        _error_name(c) for c in opened if isinstance(c, BaseException)
    )
    seen: dict[str, list[int]] = collections.defaultdict(list)
    acked: dict[str, list[int]] = collections.defaultdict(list)
    failures: collections.Counter[str] = collections.Counter()
    ok = 0

    async def read(name: str, client: Any) -> None:
        with contextlib.suppress(Exception):
            async for delivery in client.messages():
                seen[name].append(delivery.message_id)

    async def send(frm: str, to: str) -> None:
        nonlocal ok
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                result = await clients[frm].send([to], "load")
            acked[to].append(result.message_id)
            ok += 1
        except Exception as exc:
            failures[_error_name(exc)] += 1

    readers = [asyncio.create_task(read(n, c)) for n, c in clients.items()]
    ready.put(("ready", "grpc"))
    await _wait(go, 600)
    live = list(clients)
    rng = random.Random(14)
    tasks: set[asyncio.Task[None]] = set()
    interval = 1.0 / plan["grpc_rate"] if plan["grpc_rate"] else plan["seconds"]
    end = time.monotonic() + plan["seconds"]
    next_at = time.monotonic()
    while len(live) > 1 and next_at < end:
        if len(tasks) < 2000:
            frm, to = rng.sample(live, 2)
            task = asyncio.create_task(send(frm, to))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            failures["not sent: 2000 already in flight"] += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if tasks:
        await asyncio.wait(tasks, timeout=SEND_TIMEOUT + 5)
    await asyncio.sleep(1.0)  # the last pushes
    for client in clients.values():
        with contextlib.suppress(Exception):
            await client.close()
    for reader in readers:
        reader.cancel()
    return {"sessions": len(clients), "setup_failures": dict(setup_failures),
            "rate": plan["grpc_rate"], "sent_ok": ok, "failures": dict(failures),
            "acked": _ids(acked), "seen": _ids(seen)}  # fmt: skip


# -- process entry points (multiprocessing, spawn) ----------------------------------------------
def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def run_worker(kind: str, plan: dict[str, Any], address: dict[str, Address], queue: Any,
               go: Any, stop: Any, share: int = 0) -> None:  # fmt: skip
    """One worker process: ``kind`` is canary, attacks, grpc or flood (``share``: the flood
    process's index). It exits by itself if the scene's process goes away."""
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        if kind == "flood":
            per = plan["flood_per_process"][share]
            queue.put(("ready", f"flood-{share}"))
            go.wait(600)
            result = hold_idle(address["custom"], per, plan["partial_share"], plan["seconds"],
                               host_offset=share * 7919)  # fmt: skip
            queue.put(("result", f"flood-{share}", result))
            return
        from wirechat.server import install_fast_loop

        install_fast_loop()
        if kind == "canary":
            coro = canary(plan, address["custom"], queue, stop)
        elif kind == "attacks":
            coro = attacks(plan, address["custom"], queue, go)
        elif kind == "relogin":
            coro = relogins(plan, address["custom"], queue, stop)
        elif kind == "storm":
            coro = storm_worker(plan, address["custom"], queue, go)
        else:
            coro = grpc_load(plan, address["grpc"], queue, go)
        result = asyncio.run(coro)
        result["cpu_seconds"] = cpu_seconds()
        queue.put(("result", kind, result))
    except BaseException as exc:
        import traceback

        queue.put(("failed", kind if kind != "flood" else f"flood-{share}",
                   "".join(traceback.format_exception(exc))[-3000:]))  # fmt: skip


__all__ = ["PASSWORD", "run_worker"]
