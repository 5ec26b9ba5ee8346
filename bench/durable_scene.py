"""The durable share, paired (issue 10 item 1): custom's send saturation on the SQLite file
store against the in-memory store's, in alternating blocks against two servers that run at
the same time, so the ratio is read from one moment of the machine.

Why a scene of its own. The load section measures each (transport, store) once, minutes
apart, and a drift of this shared machine between the two steps moves their ratio: the same
code read 0.79 in one reference run and 0.62 in the next, with the in-memory step alone
faster. Here both servers (``custom/memory`` and ``custom/sqlite``, a file in the run's temp
dir) start together, pinned to the server vCPU, and the lean frame generator
(bench/refs/lean_load.py, the one that saturates the server in the load section) drives them
in ``rounds`` pairs of closed-loop blocks, memory first in even rounds and SQLite first in
odd ones. The idle server only waits in epoll meanwhile. The target (bench/targets.py) is the
median of the per-pair ratios, with its distribution-free interval over the pairs.

The SQLite file keeps what earlier blocks wrote (as a user's would): later blocks write into
a larger database, which is the durable store's real condition, not a flattering empty file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.config import LEAN_TRANSPORT

if TYPE_CHECKING:
    from bench.run_steps import Step
    from bench.runner import BenchRun

Row = dict[str, Any]

#: The stores compared, in the order of an even round (odd rounds reverse it).
STORES = ("memory", "sqlite")
#: Per-block figures copied into each pair, as ``<store>_<figure>`` (bench/SCHEMA.md).
FIGURES = {
    "per_s": "achieved_per_s",
    "cpu_us": "server_cpu_us_per_op",
    "p99_us": "p99_us",
    "other_vcpus": "other_vcpus",
    "steal_vcpus": "steal_vcpus",
}


@dataclass(frozen=True)
class DurablePlan:
    rounds: int  # pairs of blocks
    block_s: float  # each block's closed loop, after its warm-up


#: Full: 9 pairs, the fewest whose median has a 95 % interval inside their range (the 2nd
#: to the 8th of 9 cover 96 %: bench.stats median_interval); ~40 s in all. Quick and tiny:
#: a reading, whose interval is the whole range and says its coverage.
PLANS = {
    "full": DurablePlan(rounds=9, block_s=1.2),
    "quick": DurablePlan(rounds=3, block_s=0.4),
    "tiny": DurablePlan(rounds=2, block_s=0.3),
}


def group(store: str) -> str:
    """The scene's server group of a store (its own SQLite file: ``#durable``)."""
    return f"{LEAN_TRANSPORT}/{store}#durable"


def steps(run: BenchRun) -> list[Step]:
    """One step, when the run measures the custom transport (the target's subject)."""
    from bench import run_phases
    from bench.run_steps import Step

    if LEAN_TRANSPORT not in run.chats:
        return []

    def step() -> None:
        measure(run)

    label = f"{LEAN_TRANSPORT}: durable share (memory and SQLite, paired)"
    return [Step(label, step, "durable", phase=run_phases.DURABLE)]


def measure(run: BenchRun) -> None:
    """Start both servers, run the pairs of blocks, stop both; pairs to ``results["durable"]``."""
    plan = PLANS.get(run.plan.mode, PLANS["quick"])
    pairs: list[Row] = run.results.setdefault("durable", [])
    try:
        for store in STORES:
            run.start_chat(group(store))
        for round_ in range(plan.rounds):
            order = STORES if round_ % 2 == 0 else STORES[::-1]
            blocks = {store: run.closed_block(group(store), plan.block_s) for store in order}
            pairs.append(pair(round_, order, blocks))
    finally:
        for store in STORES:
            run.stop(group(store))


def pair(round_: int, order: tuple[str, ...], blocks: dict[str, Row]) -> Row:
    """One entry of ``results["durable"]``: the round, which store went first, and each
    block's figures as ``<store>_<figure>`` (the shape bench.targets.paired_ratio reads)."""
    out: Row = {"round": round_, "first": order[0]}
    for store, row in blocks.items():
        for figure, key in FIGURES.items():
            out[f"{store}_{figure}"] = row.get(key)
        out[f"{store}_attempts"] = row.get("attempts", 1)
    return out


def section(results: dict[str, Any]) -> str:
    """REPORT.md: every pair of blocks, and what the target reads from them."""
    from bench.markdown import fmt_rate, fmt_us, table

    pairs: list[Row] = results.get("durable") or []
    if not pairs:
        return ""
    head = ["round", "first", "memory sends/s", "SQLite sends/s", "SQLite ÷ memory"]
    head += ["memory CPU µs/send", "SQLite CPU µs/send", "SQLite p99 µs", "other vCPUs"]
    rows = []
    for p in pairs:
        mem, disk = p.get("memory_per_s"), p.get("sqlite_per_s")
        others = [p.get(f"{s}_other_vcpus") for s in STORES]
        rows.append(
            [
                str(p["round"] + 1),
                p["first"],
                fmt_rate(mem),
                fmt_rate(disk),
                f"{disk / mem:.2f}" if mem and disk else "—",
                fmt_us(p.get("memory_cpu_us")),
                fmt_us(p.get("sqlite_cpu_us")),
                fmt_us(p.get("sqlite_p99_us")),
                f"{max((o for o in others if o is not None), default=0.0):.2f}",
            ]
        )
    return "\n".join(
        [
            "## The durable share, paired\n",
            f"`{LEAN_TRANSPORT}` send saturation on the SQLite file store (WAL, "
            "synchronous=NORMAL, group commit) against the in-memory store, both servers "
            "running at once on the server vCPU, driven in turn by the lean frame generator "
            "(a closed loop, the load section's depth) in pairs of blocks, the first store "
            "alternating. The SQLite file keeps every earlier block's messages. The target "
            "reads the median of the per-pair ratios (bench/durable_scene.py).\n",
            table(head, rows),
            "",
        ]
    )


__all__ = ["FIGURES", "PLANS", "STORES", "DurablePlan", "group", "measure", "pair", "section"]
