"""Starting the bench's child processes more than one at a time, for bench/runner.py.

A server's start-up is mostly Python importing its modules (0.4-0.6 s of CPU): on a 2-vCPU
machine two of them at once take about as long as one. Two places use that:

* A round's servers at once (``Plan.servers_together``): every server of the round, and its
  worker, start together at the round's start, unpinned so that the starts share both vCPUs;
  once one is ready, every thread it has is pinned to its vCPU (threads it starts later
  inherit that). Each then idles until its unit adopts it (an idle server uses no CPU; a gRPC
  one wakes for about 4 ms a second) and is stopped when its unit ends, as before.
* The bytes on the wire (``sizes_alone``): each wire transport on a server and a worker of its
  own, unpinned, all at once. Nothing there is timed: the byte figures are the same whatever
  else the machine does (bench/wire.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from bench.config import body
from bench.procs import Worker
from wirechat.launch import ChildProcess, ServerProcess, pin

log = logging.getLogger(__name__)
S = TypeVar("S", bound=ChildProcess)
T = TypeVar("T")


#: Messages a bytes server carries before its byte figures, so that its message ids are past
#: 127 as on any server that has served a while (and as on the rounds' servers, where the
#: bytes used to be measured): a message id's varint is then two bytes in the first-call rows
#: too, as bench/wire.py's WARM_UP_IDS makes it in the steady rows ("holds_for" says which).
PAST_FIRST_IDS = 128


def pin_threads(pid: int, cpu: int | None) -> None:
    """Pin every thread of a running process to ``cpu`` (None: leave it). Two passes, so a
    thread started by a not yet pinned one during the first is pinned too."""
    if cpu is None:
        return
    tasks = f"/proc/{pid}/task"
    if not os.path.isdir(tasks):  # no /proc: the main thread only
        pin(pid, cpu)
        return
    for _ in range(2):
        for tid in os.listdir(tasks):
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                os.sched_setaffinity(int(tid), {cpu})


def unpinned(fn: Callable[[], T], cpus: Collection[int]) -> Callable[[], T]:
    """``fn`` run with the calling thread allowed on every vCPU of ``cpus`` (empty: as it
    is). Children inherit the affinity of the thread that starts them, and the orchestrating
    process pins itself to the client vCPU (bench/runner.py): in a pool thread of its own,
    this widens that one thread only."""

    def run() -> T:
        if cpus:
            os.sched_setaffinity(0, set(cpus))  # 0: this thread, not the process
        return fn()

    return run


def start_together(
    servers: Mapping[str, tuple[S, int | None]],
    cpus: Collection[int],
    also: Callable[[], Any] | None = None,
) -> dict[str, S | BaseException]:
    """Start unstarted, unpinned ``servers`` (group -> (server, its vCPU)) at once, free to
    run on any of ``cpus``, and pin each to its vCPU once it is ready. Returns group -> the
    running server, or the exception its start raised (a failed start stops its own child).
    ``also``: a callable run at the same time (the round's worker start); its exception is
    raised after the others are in."""
    out: dict[str, S | BaseException] = {}
    with ThreadPoolExecutor(len(servers) + 1, thread_name_prefix="bench-start") as pool:
        extra: Future[Any] | None = pool.submit(also) if also is not None else None
        started = {
            group: pool.submit(unpinned(server.start, cpus))
            for group, (server, _) in servers.items()
        }
    for group, future in started.items():
        exc = future.exception()
        server, cpu = servers[group]
        if exc is None and cpu is not None:
            pin_threads(server.pid, cpu)
        out[group] = server if exc is None else exc
    if extra is not None:
        extra.result()
    return out


def sizes_job(
    worker: Worker, transport: str, server: ServerProcess, plan: str, *, check: bool
) -> list[dict[str, Any]]:
    """Run one ``sizes`` job (bench/worker.py) on ``worker`` against ``server``."""
    job = {
        "kind": "sizes",
        "transport": transport,
        "address": server.addresses[transport],
        "plan": plan,
        "check": check,
    }
    # (a request the server sheds for load is measured again by measure_sizes itself)
    return worker.run(dict(job), timeout=900)


def sizes_alone(transport: str, plan: str) -> list[dict[str, Any]]:
    """One transport's byte figures in full, on a server (memory store) and a worker started
    for them alone, neither pinned; both stopped before it returns. The server first carries
    PAST_FIRST_IDS messages, unmeasured."""
    server = ServerProcess([transport], ":memory:")
    worker = Worker()
    try:
        server.start()
        address = server.addresses[transport]
        pid = server.pid
        target = {"kind": "chat", "transport": transport, "address": address, "server_pid": pid}
        job = {"kind": "ops", "target": target, "counts": {"send": PAST_FIRST_IDS}}
        worker.run({**job, "warmup": 0, "prefix": "ids", "body": body()}, timeout=300)
        return sizes_job(worker, transport, server, plan, check=False)
    finally:
        worker.stop()
        server.stop()


__all__ = [
    "PAST_FIRST_IDS",
    "pin_threads",
    "sizes_alone",
    "sizes_job",
    "start_together",
    "unpinned",
]
