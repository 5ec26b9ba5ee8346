"""The packet-capture check of the steady ``resume`` row (issue 13), beside ``bench/capture.py``.

The same instrument as ``bench/capture.py`` (whose docstring gives the method): ``tcpdump``
on loopback, or the kernel's counters of the server's sockets where it cannot run; clients
connected straight to the server, none of the bench's relays or counters. A resumer
connection, warmed up like the bench's (``bench/wire_account.py``: request ids past 127, a
few resumes first), resumes ``calls`` times with a live token: before each, an issuer on
its own connection (never in a window) logs in again to get one; after each, the resumer
logs out (which revokes it). Each resume's window runs from just before it to GAP after
it, so the push stream gRPC's client opens at a login is in it, as in the bench's row.

Only ``resume`` is checked this way: ``change_password`` and its ``password_changed`` need
a second session of the user ended each call, and their frames are the same kinds
(requests, replies, a notice) the checked ops already show the bench counts right.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.capture import (
    GAP,
    CallBytes,
    Tcpdump,
    server_socket_counts,
    split_calls,
    tcpdump_usable,
)
from bench.payloads import PASSWORD, username
from bench.wire_account import WARM_UP_CALLS, WARM_UP_REQUESTS, warm_up_requests
from transports import registry


async def steady_resumes(transport: str, address: tuple[str, int], calls: int) -> list[CallBytes]:
    """``calls`` steady resumes by a client connected straight to the server, each measured
    by the capture (or ss): the resumer connection's bytes of each call."""
    port = address[1]
    module = registry.get(transport)
    capture = Tcpdump(port) if tcpdump_usable() else None
    if capture is not None:
        capture.start()
    name = username(os.urandom(3).hex(), "k", 0)
    issuer = module.open_client(address, auto_ack=False)
    resumer = module.open_client(address, auto_ack=False)
    times: list[float] = []
    kernel: list[dict[int, tuple[int, int]]] = []

    def mark() -> None:
        times.append(time.time())
        if capture is None:
            kernel.append(server_socket_counts(port))

    async def token() -> str:
        if issuer.logged_in:
            await issuer.logout()
        await issuer.login(name, PASSWORD)
        return issuer.resume_token

    try:
        await issuer.connect()
        await issuer.signup(name, PASSWORD)
        before = set(server_socket_counts(port))
        await resumer.connect()
        await asyncio.sleep(GAP)
        new = set(server_socket_counts(port)) - before
        if len(new) != 1:
            raise RuntimeError(f"{transport}: the resumer opened {len(new)} connections, not 1")
        (peer,) = new
        await resumer.resume(await token())
        await warm_up_requests(resumer, WARM_UP_REQUESTS - 1 - 2 * WARM_UP_CALLS)
        for index in range(WARM_UP_CALLS + calls):
            await resumer.logout()  # revokes the token it resumed with
            fresh = await token()
            measured = index >= WARM_UP_CALLS
            if measured:
                await asyncio.sleep(GAP)
                mark()
            await resumer.resume(fresh)
            if measured:
                await asyncio.sleep(GAP)
                mark()
        await issuer.delete_account(name, PASSWORD)
    finally:
        await resumer.close()
        await issuer.close()
        if capture is not None:
            capture.stop()
    pairs = [(2 * i, 2 * i + 1) for i in range(calls)]
    if capture is None:
        k = kernel
        return [
            CallBytes(k[b][peer][0] - k[a][peer][0], k[b][peer][1] - k[a][peer][1])
            for a, b in pairs
        ]
    windows = {"resume": (peer, [(times[a], times[b]) for a, b in pairs])}
    return split_calls(capture.segments(), port, windows)["resume"]


def bench_resume(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """The bench's steady resume headline (c2s, s2c)."""
    (row,) = [r for r in rows if (r["op"], r["phase"]) == ("resume", "steady")]
    return row["c2s_bytes"], row["s2c_bytes"]


__all__ = ["bench_resume", "steady_resumes"]
