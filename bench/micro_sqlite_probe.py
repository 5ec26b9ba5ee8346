"""micro_sqlite_probe: the custom transport's SEND saturation on the memory store beside the
SQLite file store, in one run (issue 10's group-commit target: SQLite >= 0.7x memory).

Each round starts one ``wirechat server`` per store (pinned to one vCPU, the generator to the
other), drives it with the lean frame generator (bench/refs/lean_load.py: ``connections``
connections x ``depth`` SENDs in flight, closed loop, one offline recipient) for ``seconds``,
and prints sends/s and the server's CPU per send (its /proc CPU time over the window; in
brackets its system part, which callgrind does not count: the WAL's write() calls). The
window opens after the sign-ups and the warm-up (until 2026-11-30 the CPU and instruction
counters started before the sign-ups: their password hashes added a fixed cost, ~14,000
instructions a send of a 10 s callgrind window, to both stores). The stores alternate
within a round; medians and the SQLite÷memory ratio close the run.

``--callgrind``: run each server under ``valgrind --tool=callgrind`` with instrumentation off,
switch it on for the window (``callgrind_control -i on``) and print the instructions per send
(Ir of the window ÷ its sends): the figure this noisy VM cannot blur.

    .venv/bin/python -m bench.micro_sqlite_probe --rounds 5 --seconds 4
    .venv/bin/python -m bench.micro_sqlite_probe --callgrind --rounds 1 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.loadgen import Timings, close
from bench.refs.lean_load import connect_senders, frames_closed_loop, warm_up
from transports.custom import Connection
from wirechat.launch import ServerProcess, pin

PASSWORD = "probe-password-1"
BODY = "x" * 32


class _InTree(ServerProcess):
    """The server of another checkout (``--baseline``): its modules, this interpreter."""

    def __init__(self, db: str, tree: str, cpu: int | None) -> None:
        super().__init__(["custom"], db, cpu=cpu)
        self.tree = tree

    def command(self) -> list[str]:
        # (sh execs python: the pid pinned and measured is the server's)
        run = f'cd "{self.tree}" && exec "$0" "$@"'
        return ["sh", "-c", run, *super().command()]


class _Callgrind(ServerProcess):
    """The server under callgrind, collecting nothing until told (``callgrind_control``)."""

    def __init__(self, db: str, out: str, cpu: int | None, tree: str = "") -> None:
        super().__init__(["custom"], db, cpu=cpu)
        self.out = out
        self.tree = tree

    def command(self) -> list[str]:
        valgrind = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={self.out}",
            *super().command(),
        ]
        if not self.tree:
            return valgrind
        return ["sh", "-c", f'cd "{self.tree}" && exec "$0" "$@"', *valgrind]


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _instructions(out: str) -> int:
    """Ir of the dumps callgrind wrote (the window's, collection being off elsewhere)."""
    total = 0
    for name in glob.glob(out + "*"):
        for line in Path(name).read_text().splitlines():
            match = re.match(r"totals: (\d+)", line)
            if match:
                total += int(match[1])
                break
    return total


async def _drive(
    address: tuple[str, int],
    args: argparse.Namespace,
    tag: str,
    window: Callable[[], Any] = lambda: None,
) -> tuple[int, float, Any]:
    """(sends answered in the window, its seconds, what ``window`` gave) against one server.
    ``window`` runs just before the window opens: after the sign-ups (their password hashes
    are millions of instructions, ~14,000 a send of a 10 s window under callgrind) and the
    warm-up, which are no part of what a send costs."""
    timings = Timings()
    # the recipient: signed up, then offline (its messages stay pending, as in the bench)
    [owner] = await connect_senders(
        address, Connection, [f"{tag}r"], PASSWORD, (f"{tag}r",), BODY, timings
    )
    close([owner])
    names = [f"{tag}s{i}" for i in range(args.connections)]
    conns = await connect_senders(address, Connection, names, PASSWORD, (f"{tag}r",), BODY, timings)
    try:
        await warm_up(conns, args.warmup)
        opened = window()
        start = time.perf_counter()
        result = await frames_closed_loop(conns, args.depth, args.seconds)
        wall = time.perf_counter() - start
        if result.errors:
            raise RuntimeError(f"{result.errors} errors: {result.first_error}")
        return len(timings.latency), wall, opened
    finally:
        close(conns)


async def _round(label: str, args: argparse.Namespace, tmp: str, i: int) -> dict[str, float]:
    store, _, tree = label.partition("@")
    db = ":memory:" if store == "memory" else os.path.join(tmp, f"probe-{i}-{tree}.db")
    out = os.path.join(tmp, f"callgrind-{store}{tree}-{i}.out")
    server: ServerProcess
    if args.callgrind:
        server = _Callgrind(db, out, args.server_cpu, args.baseline if tree else "")
    elif tree:
        server = _InTree(db, args.baseline, args.server_cpu)
    else:
        server = ServerProcess(["custom"], db, cpu=args.server_cpu)
    server.start()
    try:
        address = server.addresses["custom"]
        proc = psutil.Process(server.pid)
        if args.callgrind:
            # warm up outside the window, then count a window of its own
            await _drive(address, _warm_only(args), f"w{i}{store[0]}")

        def window() -> Any:  # (the counters start here: no sign-up, no warm-up inside)
            if args.callgrind:
                _control(server.pid, "-i", "on")
            return proc.cpu_times()

        sends, wall, before = await _drive(address, args, f"p{i}{store[0]}", window)
        after = proc.cpu_times()
        row = {
            "sends_per_s": sends / wall,
            "cpu_us_per_send": 1e6
            * ((after.user + after.system) - (before.user + before.system))
            / max(sends, 1),
            "sys_us_per_send": 1e6 * (after.system - before.system) / max(sends, 1),
            "sends": sends,
        }
        if args.callgrind:
            _control(server.pid, "-i", "off")
            _control(server.pid, "-d")
            row["ir_per_send"] = _instructions(out) / max(sends, 1)
        return row
    finally:
        server.stop(timeout=60)


def _warm_only(args: argparse.Namespace) -> argparse.Namespace:
    warm = argparse.Namespace(**vars(args))
    warm.seconds = min(args.seconds, 2.0)
    return warm


async def main(args: argparse.Namespace) -> None:
    pin(os.getpid(), args.client_cpu)
    stores = args.stores.split(",")
    if args.baseline:
        stores += [f"{store}@base" for store in stores]
    rows: dict[str, list[dict[str, float]]] = {s: [] for s in stores}
    with tempfile.TemporaryDirectory(prefix="wirechat-probe-") as tmp:
        tmp = args.keep or tmp
        for i in range(args.rounds):
            for store in stores if i % 2 == 0 else stores[::-1]:
                row = await _round(store, args, tmp, i)
                rows[store].append(row)
                extra = f"  {row['ir_per_send']:,.0f} Ir/send" if "ir_per_send" in row else ""
                print(
                    f"round {i} {store:12s} {row['sends_per_s']:9,.0f} sends/s"
                    f"  {row['cpu_us_per_send']:6.1f} us CPU/send"
                    f" ({row['sys_us_per_send']:4.1f} system){extra}",
                    flush=True,
                )
    medians: dict[str, dict[str, float]] = {}
    for store, got in rows.items():
        medians[store] = {k: statistics.median(r[k] for r in got) for k in got[0]}
        m = medians[store]
        extra = f"  {m['ir_per_send']:,.0f} Ir/send" if "ir_per_send" in m else ""
        print(
            f"median  {store:12s} {m['sends_per_s']:9,.0f} sends/s"
            f"  {m['cpu_us_per_send']:6.1f} us CPU/send ({m['sys_us_per_send']:4.1f} system){extra}"
        )
    for tree in ("", "@base"):
        memory, sqlite = f"memory{tree}", f"sqlite{tree}"
        if memory not in medians or sqlite not in medians:
            continue
        ratio = medians[sqlite]["sends_per_s"] / medians[memory]["sends_per_s"]
        ratios = [
            s["sends_per_s"] / m["sends_per_s"]
            for s, m in zip(rows[sqlite], rows[memory], strict=True)
        ]
        print(
            f"{sqlite}/{memory} sends/s: {ratio:.2f} of the medians;"
            f" per round {', '.join(f'{r:.2f}' for r in ratios)}"
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument(
        "--baseline", default="", help="another checkout: its servers run too (label @base)"
    )
    parser.add_argument("--keep", default="", help="a directory for the databases and dumps")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(parse(sys.argv[1:])))
