"""What a worker job connects to, built from the job's ``target`` dict, plus CPU-time bookkeeping.

A target is either a chat transport (``{"kind": "chat", "transport": NAME, "address":
[host, port], "server_pid": pid}``; for a transport without a wire (``Entry.wire`` false: the
loopback) ``{"kind": "chat", "transport": NAME, "db": path}``, served in this very process,
its address being the service itself) or a reference echo server (``{"kind": "echo", "ref":
NAME, "address": [...], "server_pid": pid}``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.meta import background_cpu, machine_seconds
from core import ChatClient, ChatService, HashCost
from core.store import Store, open_store
from transports import registry

#: Password of every bench account; the server runs with --hash-cost low, so signup and login
#: measure the protocol and the store, not argon2.
PASSWORD = "bench-password"


@dataclass
class ChatTarget:
    """Opens connected clients of one chat transport; ``aclose`` closes every one of them."""

    transport: str
    open: Callable[[bool], ChatClient]
    server_pid: int
    _service: ChatService | None = None
    _store: Store | None = None
    _clients: list[ChatClient] = field(default_factory=list)

    @property
    def in_process(self) -> bool:
        return self.server_pid == os.getpid()

    async def client(self, *, auto_ack: bool = False) -> ChatClient:
        client = self.open(auto_ack)
        await client.connect()
        self._clients.append(client)
        return client

    async def user(self, name: str, *, signup: bool = True, auto_ack: bool = False) -> ChatClient:
        """A connected client logged in as ``name`` (signed up first when ``signup``)."""
        client = await self.client(auto_ack=auto_ack)
        if signup:
            await client.signup(name, PASSWORD)
        else:
            await client.login(name, PASSWORD)
        return client

    async def discard(self, client: ChatClient) -> None:
        await client.close()
        if client in self._clients:
            self._clients.remove(client)

    async def aclose(self) -> None:
        for client in self._clients:
            try:
                await client.close()
            except Exception:
                pass
        self._clients.clear()
        if self._service is not None:
            await self._service.shutdown()
        if self._store is not None:
            await self._store.close()


def chat_target(spec: dict[str, Any]) -> ChatTarget:
    transport = spec["transport"]
    module = registry.get(transport)
    if not registry.entry(transport).wire:  # in-process: the address is the service
        store = open_store(spec.get("db", ":memory:"))
        service = ChatService(store, hash_cost=HashCost.LOW)
        return ChatTarget(
            transport,
            lambda auto_ack: module.open_client(service, auto_ack=auto_ack),
            os.getpid(),
            _service=service,
            _store=store,
        )
    address = tuple(spec["address"])
    return ChatTarget(
        transport,
        lambda auto_ack: module.open_client(address, auto_ack=auto_ack),
        int(spec["server_pid"]),
    )


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid``.

    Reads the kernel's per-process CPU clock of another process (clock_getcpuclockid(3): the
    id is ``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)``), which counts in nanoseconds; psutil's
    /proc/<pid>/stat figures tick at 10 ms, too coarse for a loop of a few thousand calls.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:  # not Linux, or the process is gone
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system


class CpuMeter:
    """CPU seconds of the server process, of this (client) process, and of everything else
    on the machine, between two marks.

    For an in-process target (loopback) the server *is* this process: its CPU is reported as
    the server's and the client's is None, since the two cannot be told apart.

    ``other_vcpus`` is how many vCPUs' worth of work processes other than the server and this
    client did meanwhile (the orchestrating bench process is idle while a job runs). On a
    2-vCPU machine with both pinned, anything above ~0.1 competed with the measurement.
    ``steal_vcpus`` is how many vCPUs the hypervisor gave other guests meanwhile (/proc/stat's
    steal): time the server or the client wanted to run and could not, as with other work.
    """

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.in_process = server_pid == os.getpid()
        self._start = self._read()
        self._split = self._read_split()

    def _read(self) -> tuple[float, float, float, dict[str, float]]:
        server = 0.0 if self.in_process else process_cpu_s(self.server_pid)
        return time.perf_counter(), server, time.process_time(), machine_seconds()

    def _read_split(self) -> tuple[float, float, float, float] | None:
        """The second way: user and system seconds of the server and of this process from
        the kernel's tick accounting (/proc/<pid>/stat through psutil; os.times for this
        process), read outside the timed window like the clocks."""
        try:
            server = psutil.Process(self.server_pid).cpu_times()
        except (psutil.Error, OSError):
            return None
        own = os.times()
        return server.user, server.system, own.user, own.system

    def restart(self) -> None:
        self._start = self._read()
        self._split = self._read_split()

    def split(self) -> dict[str, float | None]:
        """Since the last (re)start, from /proc/<pid>/stat: ``server_user_s``,
        ``server_system_s`` (for an in-process target: this process) and ``client_user_s``,
        ``client_system_s`` (None in process). Ticks of 10 ms: a cross-check of the clocks,
        and the user/system split they do not give."""
        end, start = self._read_split(), self._split
        if end is None or start is None:
            return {}
        su, ss, cu, cs = (b - a for a, b in zip(start, end, strict=True))
        if self.in_process:
            return {"server_user_s": cu, "server_system_s": cs}
        return {
            "server_user_s": su,
            "server_system_s": ss,
            "client_user_s": cu,
            "client_system_s": cs,
        }

    def elapsed(self) -> dict[str, float | None]:
        """{"wall_s", "server_cpu_s", "client_cpu_s", "other_vcpus", "steal_vcpus"} since the
        last (re)start, and :meth:`split`'s figures."""
        wall, server, client, machine = self._read()
        wall0, server0, client0, machine0 = self._start
        wall_s, server_s, client_s = wall - wall0, server - server0, client - client0
        machine_share = background_cpu(
            {"wall": wall0, "ours": server0 + client0, **machine0},
            {"wall": wall, "ours": server + client, **machine},
        )
        if self.in_process:  # one process: all of it is "the server"
            server_s, client_s_or_none = client_s, None
        else:
            client_s_or_none = client_s
        return {
            "wall_s": wall_s,
            "server_cpu_s": server_s,
            "client_cpu_s": client_s_or_none,
            **machine_share,
            **self.split(),
        }


def cpu_fields(cpu: dict[str, float | None], ops: int) -> dict[str, float | None]:
    """Per-operation CPU and utilisation fields of a row, from CpuMeter.elapsed()."""
    from bench.stats import per_op_us

    wall = cpu["wall_s"] or 0.0
    server, client = cpu["server_cpu_s"], cpu["client_cpu_s"]
    fields: dict[str, float | None] = {
        "server_cpu_us_per_op": per_op_us(server, ops),
        "client_cpu_us_per_op": per_op_us(client, ops),
        "server_cpu_util": None if server is None or wall <= 0 else round(server / wall, 3),
        "client_cpu_util": None if client is None or wall <= 0 else round(client / wall, 3),
        "other_vcpus": cpu.get("other_vcpus"),
        "steal_vcpus": cpu.get("steal_vcpus"),
        # per core: operations per second of server CPU (the throughput one core would give)
        "ops_per_server_cpu_s": None if not server else round(ops / server, 1),
    }
    # The second way (/proc/<pid>/stat ticks, user and system apart): per op, and the ratio
    # of its total to the clocks' (1.0: the two ways agree; ticks are 10 ms, so a short loop
    # differs by up to 0.01 s / its CPU time).
    user, system = cpu.get("server_user_s"), cpu.get("server_system_s")
    if user is not None and system is not None:
        fields["server_user_us_per_op"] = per_op_us(user, ops)
        fields["server_system_us_per_op"] = per_op_us(system, ops)
        fields["server_cpu_check"] = None if not server else round((user + system) / server, 3)
    user, system = cpu.get("client_user_s"), cpu.get("client_system_s")
    if user is not None and system is not None:
        fields["client_user_us_per_op"] = per_op_us(user, ops)
        fields["client_system_us_per_op"] = per_op_us(system, ops)
    return fields


__all__ = [
    "PASSWORD",
    "ChatTarget",
    "CpuMeter",
    "chat_target",
    "cpu_fields",
    "process_cpu_s",
]
