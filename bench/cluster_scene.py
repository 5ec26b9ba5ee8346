"""The cluster scene (issue 11): what the hop between nodes costs, with 1, 2 and 3 nodes on one
PostgreSQL and one nats-server, all on this machine.

For each node count n (each node a ``wirechat server --bus``, custom transport):
  * **push latency**: one sender on node 1, its recipient's session on node n (so for n > 1 the
    push crosses NATS; for n = 1 it is the node's own feed), one message in flight; a sample is
    the time from calling ``send`` to the recipient's client handing the message over;
  * **send throughput**: ``SENDERS`` closed-loop senders spread round-robin over the nodes,
    each sending to a recipient logged in on the *next* node, for ``SECONDS``; acknowledged
    sends per second, and the push latency of those messages.
A row "1 node, no bus" (the in-process bus, the single-node default, on the same PostgreSQL)
is the baseline the hop is read against.

One machine: every node, PostgreSQL, nats-server and the clients share its vCPUs, so read the
figures as the cost of the hop, not as capacity (more nodes here means more processes on the
same two vCPUs). PostgreSQL runs without fsync (durable=False) so the disk does not hide the
bus. ``python -m bench.cluster_scene`` (``make bench-cluster``) writes results.json, REPORT.md
and cluster.png under reports/cluster/<run>/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from core import ChatClient, Delivery
from transports import registry
from wirechat.launch import ServerProcess
from wirechat.services import NatsService, PostgresService

TRANSPORT = "custom"
PW = "bench-cluster-pw"
#: Latency samples per row (one in flight), after WARMUP unmeasured ones.
SAMPLES = 400
WARMUP = 50
#: Closed-loop senders and how long they send, per row.
SENDERS = 6
SECONDS = 8.0


@dataclass
class Row:
    nodes: int
    bus: bool
    latency_p50_us: float
    latency_p99_us: float
    sends_per_s: float
    load_push_p50_us: float
    load_push_p99_us: float
    acked: int
    delivered: int
    node_cpu_us_per_send: float  # CPU (user+sys) of every node during the load / acked sends
    nats_cpu_us_per_send: float  # nats-server's CPU during the load / acked sends
    round: int = 0


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class _Timed:
    """A logged-in client that records when each message id was handed over."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.seen: dict[int, float] = {}
        self.arrived = asyncio.Event()
        plain = client.delivered

        def delivered(d: Delivery) -> None:
            self.seen.setdefault(d.message_id, time.perf_counter())
            self.arrived.set()
            plain(d)

        client.delivered = delivered  # type: ignore[method-assign,assignment]
        self.task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        async for _ in self.client.messages():  # (acks each)
            pass


async def _client(node: ServerProcess, name: str, signup: bool) -> ChatClient:
    client = registry.get(TRANSPORT).open_client(node.addresses[TRANSPORT])
    await client.connect()
    await (client.signup(name, PW) if signup else client.login(name, PW))
    return client


def _cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by these processes."""
    import psutil  # type: ignore[import-untyped]

    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


async def _measure(
    nodes: list[ServerProcess],
    tag: str,
    bus: bool,
    nats_pid: int,
    samples: int = SAMPLES,
    seconds: float = SECONDS,
) -> Row:
    n = len(nodes)
    sender = await _client(nodes[0], f"ls{tag}", True)
    reader = _Timed(await _client(nodes[-1], f"lr{tag}", True))
    latencies: list[float] = []
    for i in range(WARMUP + samples):
        reader.arrived.clear()
        start = time.perf_counter()
        sent = await sender.send([f"lr{tag}"], f"ping {i}")
        while sent.message_id not in reader.seen:
            await asyncio.wait_for(reader.arrived.wait(), 30)
            reader.arrived.clear()
        if i >= WARMUP:
            latencies.append((reader.seen[sent.message_id] - start) * 1e6)

    # Throughput: closed-loop senders on every node, each to a reader on the next node.
    senders = [await _client(nodes[i % n], f"ts{tag}{i}", True) for i in range(SENDERS)]
    readers = [
        _Timed(await _client(nodes[(i + 1) % n], f"tr{tag}{i}", True)) for i in range(SENDERS)
    ]
    sent_at: dict[int, tuple[int, float]] = {}
    stop = time.perf_counter() + seconds

    async def run(i: int) -> None:
        k = 0
        while time.perf_counter() < stop:
            start = time.perf_counter()
            result = await senders[i].send([f"tr{tag}{i}"], f"load {k}")
            sent_at[result.message_id] = (i, start)
            k += 1

    node_pids = [node.pid for node in nodes]
    cpu_nodes, cpu_nats = _cpu(node_pids), _cpu([nats_pid])
    began = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(SENDERS)))
    elapsed = time.perf_counter() - began
    cpu_nodes, cpu_nats = _cpu(node_pids) - cpu_nodes, _cpu([nats_pid]) - cpu_nats
    for _ in range(600):  # up to 30 s for the last pushes
        if all(mid in readers[i].seen for mid, (i, _) in sent_at.items()):
            break
        await asyncio.sleep(0.05)
    pushes = [
        (readers[i].seen[mid] - start) * 1e6
        for mid, (i, start) in sent_at.items()
        if mid in readers[i].seen
    ]
    for client in [sender, reader.client, *senders, *(r.client for r in readers)]:
        await client.close()
    return Row(
        nodes=n,
        bus=bus,
        latency_p50_us=statistics.median(latencies),
        latency_p99_us=_pct(latencies, 0.99),
        sends_per_s=len(sent_at) / elapsed,
        load_push_p50_us=_pct(pushes, 0.5),
        load_push_p99_us=_pct(pushes, 0.99),
        acked=len(sent_at),
        delivered=len(pushes),
        node_cpu_us_per_send=cpu_nodes / max(1, len(sent_at)) * 1e6,
        nats_cpu_us_per_send=cpu_nats / max(1, len(sent_at)) * 1e6,
    )


async def run_scene(node_counts: Sequence[int], sweep: float, rounds: int) -> list[Row]:
    """Every configuration once per round, in reverse order every other round (so a trend
    in the machine's load does not favour one end)."""
    rows = []
    with PostgresService(durable=False) as postgres, NatsService() as nats:
        configs = [(1, False)] + [(n, True) for n in node_counts]
        plan = [(r, c) for r in range(rounds) for c in (configs if r % 2 == 0 else configs[::-1])]
        assert nats.pid is not None
        # Unmeasured: the first run on a fresh database and page cache is slower than any
        # later one, whatever it runs (seen here as a 3x worse first row).
        warm = ServerProcess([TRANSPORT], postgres.url)
        try:
            await _measure([warm.start()], "w", False, nats.pid, samples=100, seconds=2.0)
        finally:
            warm.stop()
        for index, (round_, (n, bus)) in enumerate(plan):
            bus_args = ["--bus", nats.url, "--sweep-interval", str(sweep)] if bus else []
            nodes = [
                ServerProcess(
                    [TRANSPORT],
                    postgres.url,
                    extra_args=[*bus_args, *(["--node-name", f"n{k}"] if bus else [])],
                )
                for k in range(n)
            ]
            try:
                for node in nodes:
                    node.start()
                row = await _measure(nodes, f"{index}x{os.getpid() % 1000}", bus, nats.pid)
                row.round = round_
            finally:
                for node in nodes:
                    node.stop()
            print(
                f"{n} node(s){'' if bus else ', no bus'}: push p50 {row.latency_p50_us:.0f} us "
                f"p99 {row.latency_p99_us:.0f} us; {row.sends_per_s:.0f} sends/s "
                f"(push p50 {row.load_push_p50_us:.0f} us under load); "
                f"{row.delivered}/{row.acked} delivered; node CPU "
                f"{row.node_cpu_us_per_send:.0f} us/send, nats {row.nats_cpu_us_per_send:.0f}",
                flush=True,
            )
            rows.append(row)
    return rows


_FIELDS = (
    "latency_p50_us",
    "latency_p99_us",
    "sends_per_s",
    "load_push_p50_us",
    "load_push_p99_us",
    "node_cpu_us_per_send",
    "nats_cpu_us_per_send",
)


def summarize(rows: list[Row]) -> list[dict[str, float | int | bool]]:
    """One line per configuration: the median over rounds of each figure."""
    keys = sorted({(r.nodes, r.bus) for r in rows}, key=lambda k: (k[1], k[0]))
    out: list[dict[str, float | int | bool]] = []
    for nodes, bus in keys:
        mine = [r for r in rows if (r.nodes, r.bus) == (nodes, bus)]
        line: dict[str, float | int | bool] = {"nodes": nodes, "bus": bus, "rounds": len(mine)}
        for name in _FIELDS:
            line[name] = statistics.median(getattr(r, name) for r in mine)
        line["delivered"] = sum(r.delivered for r in mine)
        line["acked"] = sum(r.acked for r in mine)
        out.append(line)
    return out


def report(rows: list[Row], out: Path) -> None:
    load = os.getloadavg()
    summary = summarize(rows)
    lines = [
        "# Cluster scene",
        "",
        f"One machine ({os.cpu_count()} vCPUs, load average {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} at the end): nodes, PostgreSQL (no fsync), nats-server and the "
        "clients share it. Read it as the cost of the hop, not as capacity. Medians over "
        f"{max(int(x['rounds']) for x in summary)} rounds (configurations interleaved).",
        "",
        "| nodes | bus | push p50 | push p99 | sends/s | push p50 / p99 under load "
        "| node CPU / send | nats-server CPU / send | delivered / acked |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for x in summary:
        lines.append(
            f"| {x['nodes']} | {'NATS' if x['bus'] else 'in-process'} "
            f"| {x['latency_p50_us']:.0f} µs | {x['latency_p99_us']:.0f} µs "
            f"| {x['sends_per_s']:.0f} | {x['load_push_p50_us']:.0f} / "
            f"{x['load_push_p99_us']:.0f} µs | {x['node_cpu_us_per_send']:.0f} µs "
            f"| {x['nats_cpu_us_per_send']:.0f} µs | {x['delivered']} / {x['acked']} |"
        )
    (out / "REPORT.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {"summary": summary, "rows": [asdict(r) for r in rows], "loadavg": load}, indent=2
        )
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4))
    labels = [str(x["nodes"]) if x["bus"] else f"{x['nodes']}\n(no bus)" for x in summary]
    at = list(range(len(summary)))
    left.bar([i - 0.2 for i in at], [x["latency_p50_us"] / 1000 for x in summary], 0.4, label="p50")
    left.bar([i + 0.2 for i in at], [x["latency_p99_us"] / 1000 for x in summary], 0.4, label="p99")
    left.set_ylabel("ms, send → recipient's client (one in flight)")
    left.set_title("push latency: sender on node 1, recipient on the last")
    left.legend()
    middle.bar(at, [x["sends_per_s"] for x in summary])
    middle.set_ylabel("acknowledged sends / s")
    middle.set_title(f"send throughput, {SENDERS} closed-loop senders")
    right.bar(at, [x["node_cpu_us_per_send"] for x in summary], label="all nodes")
    right.bar(
        at,
        [x["nats_cpu_us_per_send"] for x in summary],
        bottom=[x["node_cpu_us_per_send"] for x in summary],
        label="nats-server",
    )
    right.set_ylabel("CPU µs per acknowledged send")
    right.set_title("CPU per send (nodes + bus)")
    right.legend()
    for axis in (left, middle, right):
        axis.set_xticks(at, labels)
        axis.set_xlabel("nodes")
    fig.tight_layout()
    fig.savefig(out / "cluster.png", dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="reports/cluster")
    parser.add_argument("--nodes", default="1,2,3", help="node counts with the NATS bus")
    parser.add_argument("--sweep-interval", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="each configuration this often")
    args = parser.parse_args(argv)
    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    counts = [int(n) for n in args.nodes.split(",")]
    rows = asyncio.run(run_scene(counts, args.sweep_interval, args.rounds))
    report(rows, out)
    print(f"report: {out}/REPORT.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
