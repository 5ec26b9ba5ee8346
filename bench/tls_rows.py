"""What TLS costs each wire transport: bytes per operation, the handshake, and ``send`` p50.

DESIGN.md, "Security at the edge": an honest comparison includes what a real deployment pays.
For every wire transport this module measures, in one job, the same things twice, in clear and
over TLS (a throwaway CA made for the run with ``trustme``; the client checks the certificate
as a real one would, ``transports._tls.ClientTls``):

Bytes (counted at the socket)
    The client dials a counting TCP relay in this (the worker's) process in front of the real
    server. The relay counts the **TCP payload** forwarded in each direction, as it reads it,
    whatever it holds: TLS records are opaque to it, so it cannot use the transports' frame
    counters (bench/wire.py), which parse plaintext. It also reads the TLS record headers (5
    bytes: type, version, length; RFC 8446 5.1) to count the records of each operation, and the
    ServerHello (sent in clear) to name the version and cipher suite the two ends chose.
    Operations run one at a time; after each the relay must carry no byte for
    :data:`QUIET_S` before the next starts, so late bytes (TLS 1.3 session tickets, gRPC's
    WINDOW_UPDATEs) land on the operation that caused them. Each figure is the median call of
    its row (gRPC's timer-driven PINGs disturb a few calls; the median leaves them out).
    *Record overhead* = (TLS bytes - plain bytes) / TLS records of the same operation, measured,
    not assumed (AES-GCM and ChaCha20-Poly1305 in TLS 1.3 add 5 B of header, 1 B of inner
    content type and a 16 B tag: 22 B).

    Operations: ``connect`` (TCP connect + the TLS handshake + the transport's own handshake,
    what ``ChatClient.connect()`` causes; plain vs TLS is the handshake's cost), ``login``
    (first on the connection), ``send`` (32 B to one live recipient, the sender's connection:
    request and reply), ``deliver`` (that message's push on the recipient's connection, with
    its automatic ack), ``close``.

Handshake time
    ``connect()`` then ``close()``, straight to the server (no relay), alternately in clear and
    over TLS: wall time of ``connect()``, and CPU time of the client (this process) and of the
    server for it.

``send`` latency with TLS on
    The bench's own send (32 B to one offline recipient, stored pending, like the main latency
    table), one in flight, straight to the server, in alternating blocks (clear, TLS, clear, ...)
    so drift and other processes hit both alike: p50/p90/p99, and CPU per send of client and
    server.

The two servers (one in clear, one over TLS) each serve every wire transport being measured,
from one process each, pinned to the server's vCPU like every other server of the run; only the
transport under test is active.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.payloads import PASSWORD, username
from bench.tls_relay import OP_TIMEOUT_S, QUIET_S, Relay, counted, server_hello

if TYPE_CHECKING:
    from bench.run_steps import Step
    from bench.runner import BenchRun
    from core.client import ChatClient
    from transports._tls import ClientTls

log = logging.getLogger(__name__)

BYTE_OPS = ("connect", "login", "send", "deliver", "close")
#: Round trips made, unmeasured, before the steady rows, so message ids are past 127 (as
#: bench/wire.py's WARM_UP_IDS: its steady rows and these plain ones then count alike).
WARM_UP_IDS = 128


@dataclass(frozen=True)
class TlsPlan:
    """How much each mode measures, per transport and per mode (clear, TLS)."""

    passes: int  # fresh connections: samples of connect, login, close
    steady: int  # sends measured on warm connections (bytes)
    handshakes: int  # connect()+close() timed per mode
    sends: int  # timed sends per mode
    block: int  # sends per alternating block
    warmup: int = 20  # untimed sends per mode first


TLS_PLANS = {
    # bytes are deterministic (3 passes, 10 steady calls confirm them); a p50 over 2,000
    # sends and 60 handshakes per mode, alternating in blocks, holds
    "full": TlsPlan(passes=3, steady=10, handshakes=60, sends=2000, block=100),
    # quick (CI): a few seconds per transport (a p50 over 200 sends per mode: rough)
    "quick": TlsPlan(passes=2, steady=3, handshakes=8, sends=200, block=50, warmup=10),
    "tiny": TlsPlan(passes=1, steady=2, handshakes=3, sends=20, block=10, warmup=2),
}


# -- the orchestrating side (bench/runner.py) -------------------------------------------------
@dataclass
class _Servers:
    plain: Any = None
    tls: Any = None
    ca_file: str = ""
    transports: list[str] = field(default_factory=list)


def steps(run: BenchRun) -> list[Step]:
    """Start the two servers, one job per wire transport, stop them (bench/runner.py)."""
    from bench import run_phases as ph
    from bench.run_steps import Step
    from transports import registry

    wire = [t for t in run.chats if registry.entry(t).wire]
    if not wire:
        return []
    servers = _Servers(transports=wire)
    group = "tls"
    start = Step(
        "tls: start servers",
        lambda: _start(run, servers),
        group,
        critical=True,
        phase=ph.SERVERS,
    )
    out = [start]
    for transport in wire:
        out.append(Step(f"tls: {transport}", _bind(run, servers, transport), group, phase=ph.TLS))
    stop = Step("tls: stop servers", lambda: _stop(servers), group, always=True, phase=ph.SERVERS)
    out.append(stop)
    return out


def _bind(run: BenchRun, servers: _Servers, transport: str) -> Callable[[], None]:
    def step() -> None:
        measure(run, servers, transport)

    return step


def _start(run: BenchRun, servers: _Servers) -> None:
    import trustme

    from transports._tls import ServerTls
    from wirechat.launch import ServerProcess

    directory = Path(run._tmp) / "tls"
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = (str(directory / n) for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(ca_file)
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    servers.ca_file = ca_file
    cpu = run.main.server_cpu
    servers.plain = ServerProcess(servers.transports, ":memory:", cpu=cpu)
    servers.tls = ServerProcess(
        servers.transports, ":memory:", cpu=cpu, tls=ServerTls(cert_file, key_file)
    )
    # both at once: each start is mostly importing (grpc, ...) and waiting for "ready"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        started = [pool.submit(server.start) for server in (servers.plain, servers.tls)]
    try:
        for future in started:
            future.result()
    except Exception:
        _stop(servers)
        raise


def _stop(servers: _Servers) -> None:
    for server in (servers.plain, servers.tls):
        if server is not None:
            server.stop()
    servers.plain = servers.tls = None


def measure(run: BenchRun, servers: _Servers, transport: str) -> None:
    """One transport's TLS job in the run's worker; rows into ``results["tls"]``."""
    if servers.plain is None or servers.tls is None:
        raise RuntimeError("tls: the servers did not start")
    plan = TLS_PLANS.get(run.plan.mode, TLS_PLANS["quick"])
    job = {
        "kind": "tls",
        "transport": transport,
        "plain": {"address": servers.plain.addresses[transport], "pid": servers.plain.pid},
        "tls": {"address": servers.tls.addresses[transport], "pid": servers.tls.pid},
        "ca": servers.ca_file,
        "plan": asdict(plan),
    }
    budget = 120 + plan.sends * 0.01 + plan.handshakes * 0.2
    rows = run._job(run.main, job, timeout=budget, timed=False)
    run.results.setdefault("tls", []).extend(rows)


# -- the worker side (bench/worker.py) ---------------------------------------------------------
class _Mode:
    """One side of the comparison: a server address and pid, and the client's TLS (or None)."""

    def __init__(self, name: str, spec: dict[str, Any], tls: ClientTls | None) -> None:
        self.name = name
        self.index = 0 if tls is None else 1  # in account names: each mode its own accounts
        self.address = (spec["address"][0], int(spec["address"][1]))
        self.pid = int(spec["pid"])
        self.tls = tls

    def open(
        self, transport: str, address: tuple[str, int] | None = None, *, auto_ack: bool = True
    ) -> ChatClient:
        from transports import registry

        module = registry.get(transport)
        return module.open_client(address or self.address, auto_ack=auto_ack, tls=self.tls)


async def _bytes_rows(
    transport: str, mode: _Mode, plan: TlsPlan, tag: str, body: str
) -> list[dict[str, Any]]:
    samples: dict[str, list[tuple[int, ...]]] = {op: [] for op in BYTE_OPS}
    # 12-character names as bench/wire.py's, so the plain rows compare with its table
    sender, receiver = username(tag, "s", mode.index), username(tag, "r", mode.index)
    relay_s = await Relay(mode.address, tls=mode.tls is not None).start()
    relay_r = await Relay(mode.address, tls=mode.tls is not None).start()
    clients: list[ChatClient] = []
    try:
        setup = mode.open(transport)
        clients.append(setup)
        await setup.connect()
        await setup.signup(sender, PASSWORD)
        await setup.close()
        setup = mode.open(transport)
        clients.append(setup)
        await setup.connect()
        await setup.signup(receiver, PASSWORD)
        await setup.close()
        for _ in range(plan.passes):  # fresh connections: connect, login, close
            client = mode.open(transport, relay_s.address)
            clients.append(client)
            samples["connect"] += await counted([relay_s], client.connect())
            samples["login"] += await counted([relay_s], client.login(sender, PASSWORD))
            samples["close"] += await counted([relay_s], client.close())
        # warm connections: the sender's send, the receiver's push and its ack
        a = mode.open(transport, relay_s.address)
        b = mode.open(transport, relay_r.address, auto_ack=True)
        clients += [a, b]
        await a.connect()
        await a.login(sender, PASSWORD)
        await b.connect()
        await b.login(receiver, PASSWORD)
        pushes = b.messages().__aiter__()

        async def one_send() -> None:
            await a.send([receiver], body)
            await pushes.__anext__()

        for _ in range(WARM_UP_IDS):  # unmeasured: one-off bytes (HPACK tables), short ids
            await one_send()
        for _ in range(plan.steady):
            sent, delivered = await counted([relay_s, relay_r], one_send())
            samples["send"].append(sent)
            samples["deliver"].append(delivered)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        await relay_s.close()
        await relay_r.close()
    version, suite, group = relay_s.hello
    rows = []
    for op in BYTE_OPS:
        calls = samples[op]
        if not calls:
            continue
        median = sorted(calls, key=lambda c: c[0] + c[1])[(len(calls) - 1) // 2]
        totals = [c[0] + c[1] for c in calls]
        rows.append(
            {
                "kind": "bytes",
                "transport": transport,
                "mode": mode.name,
                "op": op,
                "c2s_bytes": median[0],
                "s2c_bytes": median[1],
                "c2s_records": median[2] if mode.tls else None,
                "s2c_records": median[3] if mode.tls else None,
                "samples": len(calls),
                "range": [min(totals), max(totals)],
                "tls_version": version,
                "cipher_suite": suite,
                "key_exchange": group,
                "counted": "TCP payload at a relay (both directions), median call",
            }
        )
    return rows


async def _handshake_rows(
    transport: str, modes: Sequence[_Mode], plan: TlsPlan
) -> list[dict[str, Any]]:
    from bench.endpoints import process_cpu_s

    walls: dict[str, list[float]] = {m.name: [] for m in modes}
    cpu = {m.name: [0.0, 0.0] for m in modes}  # client, server seconds
    for i in range(plan.handshakes):
        for mode in modes if i % 2 == 0 else reversed(modes):
            client = mode.open(transport)
            s0, c0 = process_cpu_s(mode.pid), time.process_time()
            t0 = time.perf_counter()
            await asyncio.wait_for(client.connect(), OP_TIMEOUT_S)
            t1 = time.perf_counter()
            c1, s1 = time.process_time(), process_cpu_s(mode.pid)
            await client.close()
            walls[mode.name].append(t1 - t0)
            cpu[mode.name][0] += c1 - c0
            cpu[mode.name][1] += s1 - s0
    return [
        {
            "kind": "handshake",
            "transport": transport,
            "mode": m.name,
            "samples": plan.handshakes,
            "p50_us": statistics.median(walls[m.name]) * 1e6,
            "client_cpu_us": cpu[m.name][0] / plan.handshakes * 1e6,
            "server_cpu_us": cpu[m.name][1] / plan.handshakes * 1e6,
        }
        for m in modes
    ]


async def _send_rows(
    transport: str, modes: Sequence[_Mode], plan: TlsPlan, tag: str, body: str
) -> list[dict[str, Any]]:
    from bench.endpoints import process_cpu_s

    senders: dict[str, ChatClient] = {}
    clients: list[ChatClient] = []
    recipients = {m.name: username(tag, "o", m.index) for m in modes}
    try:
        for mode in modes:
            recipient = recipients[mode.name]
            offline = mode.open(transport)
            clients.append(offline)
            await offline.connect()
            await offline.signup(recipient, PASSWORD)  # then offline: sends are stored pending
            await offline.close()
            sender = senders[mode.name] = mode.open(transport)
            clients.append(sender)
            await sender.connect()
            await sender.signup(username(tag, "x", mode.index), PASSWORD)
            for _ in range(plan.warmup):
                await sender.send([recipient], body)
        times: dict[str, list[float]] = {m.name: [] for m in modes}
        cpu = {m.name: [0.0, 0.0] for m in modes}
        blocks = max(1, -(-plan.sends // plan.block))
        for i in range(blocks):
            for mode in modes if i % 2 == 0 else reversed(modes):
                sender = senders[mode.name]
                s0, c0 = process_cpu_s(mode.pid), time.process_time()
                for _ in range(plan.block):
                    t0 = time.perf_counter()
                    await sender.send([recipients[mode.name]], body)
                    times[mode.name].append(time.perf_counter() - t0)
                c1, s1 = time.process_time(), process_cpu_s(mode.pid)
                cpu[mode.name][0] += c1 - c0
                cpu[mode.name][1] += s1 - s0
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
    rows = []
    for m in modes:
        values = sorted(times[m.name])
        n = len(values)
        rows.append(
            {
                "kind": "send",
                "transport": transport,
                "mode": m.name,
                "samples": n,
                "body_bytes": len(body.encode()),
                "p50_us": values[(n - 1) // 2] * 1e6,
                "p90_us": values[min(n - 1, int(n * 0.9))] * 1e6,
                "p99_us": values[min(n - 1, int(n * 0.99))] * 1e6,
                "client_cpu_us": cpu[m.name][0] / n * 1e6,
                "server_cpu_us": cpu[m.name][1] / n * 1e6,
            }
        )
    return rows


async def run_tls(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The worker's job (bench/worker.py): every row of one transport, both modes."""
    from transports._tls import ClientTls

    transport: str = job["transport"]
    plan = TlsPlan(**job["plan"])
    tag = secrets.token_hex(3)  # this job's accounts: wc<tag><role><mode>, 12 characters
    body: str = job["body"]
    plain = _Mode("plain", job["plain"], None)
    tls = _Mode("tls", job["tls"], ClientTls(ca_file=job["ca"]))
    rows: list[dict[str, Any]] = []
    for mode in (plain, tls):
        rows += await _bytes_rows(transport, mode, plan, tag, body)
    rows += await _handshake_rows(transport, (plain, tls), plan)
    rows += await _send_rows(transport, (plain, tls), plan, tag, body)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.tls_rows [--plan quick] [--transports a,b]``: only these rows, through
    the bench's runner (same placement and worker); prints the REPORT.md section and writes
    the rows as JSON (``--out``)."""
    import argparse
    import json
    import tempfile

    from bench import tls_report
    from bench.config import PLANS, chat_transports
    from bench.runner import BenchRun

    parser = argparse.ArgumentParser(prog="python -m bench.tls_rows", description=main.__doc__)
    parser.add_argument("--plan", choices=sorted(PLANS), default="quick")
    parser.add_argument("--transports", default=",".join(chat_transports()))
    parser.add_argument("--out", default="reports/tls_rows.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    command = "python -m bench.tls_rows " + " ".join(argv if argv is not None else [])
    run = BenchRun(
        PLANS[args.plan], args.transports.split(","), Path(tempfile.gettempdir()), command=command
    )
    run.steps = lambda: steps(run)  # type: ignore[method-assign]
    results = run.execute()
    meta = results["meta"]
    print(tls_report.section(results))
    print(
        f"load average at the end: {meta['loadavg_end']}; {meta['duration_s']} s; "
        f"steps: {meta['step_s']}; errors: {results['errors'] or 'none'}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "tls": results.get("tls", [])}, indent=1))
    return 1 if results["errors"] else 0


__all__ = [
    "BYTE_OPS",
    "QUIET_S",
    "TLS_PLANS",
    "Relay",
    "TlsPlan",
    "run_tls",
    "server_hello",
    "steps",
]


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
