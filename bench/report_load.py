"""REPORT.md's load section: saturation per transport and store with the per-core figures
beside it, what limited each closed loop, and the open-loop steps. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bench.markdown import TIMES, table
from bench.markdown import _fmt_x as _fmt_x
from bench.markdown import fmt_rate as _fmt_rate
from bench.markdown import fmt_us as _fmt_us
from bench.report_latency import INTERFERENCE_HEAD, interference, ranks
from bench.stats import ratio
from bench.targets import GRPC, Row, client_saturation, order, saturation

#: CPU utilisation from which a process counts as the bottleneck of a closed-loop step.
SATURATED = 0.9
#: limited_by's verdict when the generator (the clients' process) was the bottleneck.
GENERATOR_LIMITED = "**generator**"


def limited_by(closed: Row) -> str:
    """What held a closed-loop step back: the server's vCPU, the generator's, or neither (the
    step waited on something else: the disk, a lock, the round trips themselves)."""
    server, client = closed.get("server_cpu_util"), closed.get("client_cpu_util")
    if server is None:
        return "—"
    if client is None:  # loopback: one process
        return "the process" if server >= SATURATED else "neither"
    if client >= SATURATED and client >= server:
        return GENERATOR_LIMITED
    if server >= SATURATED:
        return "server"
    return "neither"


#: The generator column: what drove each row (bench/load.py's engine names).
GENERATORS = {
    "client": "product client",
    "lean": "lean echo",
    "lean-frames": "lean frames",
    "lean-ws": "lean websocket",
}
#: The lean chat generators, whose closed-loop depth is the server's SEND pipeline.
LEAN_CHAT = ("lean-frames", "lean-ws")
#: The generator cell of the product client's own row beside a lean generator's.
PRODUCT_ROW = "product client (its own limit)"


def generator_name(engine: str) -> str:
    return GENERATORS.get(engine, engine)


def _lean_depths(load: list[Row]) -> str:
    """ "(the lean chat generators: N)" from their closed-loop rows, or nothing."""
    depths = sorted({r["depth"] for r in load if r.get("engine") in LEAN_CHAT and r.get("depth")})
    if not depths:
        return "(the product client)"
    return (
        f"for the product client, {'/'.join(map(str, depths))} for the lean frame and "
        "websocket generators (the custom server's whole SEND pipeline per connection, "
        "ServerLimits.sends_in_flight)"
    )


def _closed(load: list[Row], transport: str, store: str, engine: str) -> Row:
    """The closed-loop row of this transport, store and generator ({} if none)."""
    return next(
        (
            r
            for r in load
            if (r["transport"], r["store"], r["mode"]) == (transport, store, "closed")
            and r.get("engine", "client") == engine
        ),
        {},
    )


#: The per-core columns beside every throughput figure (issue 12 item 4).
PER_CORE_HEAD = ["server CPU µs/op", "user + sys µs/op", "/s per server CPU-s", "CPU check"]


def per_core_cells(row: Row) -> list[str]:
    """Server CPU per operation by the clocks, the same split into user + system by the
    kernel's ticks (/proc/<pid>/stat), operations per second of server CPU (one core's
    worth), and the two ways' ratio (ticks ÷ clocks: 1.00 when they agree)."""
    user, system = row.get("server_user_us_per_op"), row.get("server_system_us_per_op")
    split = "—" if user is None or system is None else f"{_fmt_us(user)} + {_fmt_us(system)}"
    per_cpu = row.get("ops_per_server_cpu_s")
    if per_cpu is None:
        per_cpu = ratio(1e6, row.get("server_cpu_us_per_op"))
    check = row.get("server_cpu_check")
    return [
        _fmt_us(row.get("server_cpu_us_per_op")),
        split,
        _fmt_rate(per_cpu),
        "—" if check is None else f"{check:.2f}",
    ]


def load_section(results: dict[str, Any], images: Sequence[str]) -> str:
    load = results.get("load", [])
    plan = results.get("meta", {}).get("plan", {})
    parts = [
        "## Throughput and latency under load\n",
        f"Each step sends over {plan.get('connections', '?')} connections (gRPC: channels), "
        "each its own user, to one offline recipient. "
        f"Closed loop: {plan.get('depth', '?')} requests outstanding per connection "
        f"{_lean_depths(load)}, back to back for {plan.get('closed_s', '?')} s — the saturation "
        "rate and the CPU cost per operation of both sides. *Generator*: what drove the row "
        "(the next section has each generator's own ceiling): the *lean frames* generator "
        "(bench/refs/lean_load.py) drives the transports in the custom protocol's frames, "
        "the *lean websocket* one (bench/refs/lean_ws.py: the same design over pre-encoded "
        "masked WebSocket frames) the websocket transport and `ws_echo`, "
        "the *lean echo* one (bench/loadgen.py) the bare TCP echo references, the *product "
        "client* (ChatClient, or a reference's own client) the rest; where a lean generator "
        f"measured a transport, its row is the saturation figure, the {TIMES} {GRPC} and the "
        "targets' "
        "figure, and the product client's closed loop follows it as *product client (its own "
        "limit)*: what the client reaches and costs (the server's CPU per operation beside "
        "it is the server's at that lower rate). *In flight*: requests outstanding in the "
        "closed loop. Open loop: fixed offered rates, "
        f"{plan.get('open_s', '?')} s per step, "
        "stepped as fractions of the closed-loop rate (the lean generator's where one ran), "
        "driven by the row's lean generator if it has one; every latency is timed from the "
        "request's "
        "*intended* send time, so stalls are not hidden. The generator busy-polls to keep to the "
        "schedule, so its CPU in open-loop rows is not a cost; *lag p99* is how late it sent. "
        f"*Limited by*: the process whose vCPU was at least {SATURATED:.0%} busy in the closed "
        "loop; where that is the generator, the row shows the client's limit, not the "
        "server's. Per core, beside every throughput figure: the server's CPU per operation "
        "by its CPU clock (nanoseconds), the same by the kernel's ticks split into user + "
        "system (/proc/<pid>/stat, 10 ms ticks), operations per second of server CPU (what "
        "one core would sustain), and *CPU check*, ticks ÷ clock (1.00: the two ways agree; "
        "a short step may differ by 0.01 s of ticks).\n",
    ]
    sat_rows: list[tuple[Any, ...]] = []
    grpc_sat = saturation(results, GRPC)
    grpc_rate = None if grpc_sat is None else grpc_sat["achieved_per_s"]

    def cells(row: Row, closed: Row, generator: str) -> tuple[Any, ...]:
        return (
            generator,
            closed.get("max_inflight") or "—",
            _fmt_rate(row["achieved_per_s"]),
            _fmt_x(ratio(row["achieved_per_s"], grpc_rate)),
            *per_core_cells(closed or row),
            _fmt_us(closed.get("client_cpu_us_per_op")),
            _fmt_us(closed.get("p50_us")),
            _fmt_us(closed.get("p99_us")),
            limited_by(closed),
            *interference(row),
        )

    for transport in order(results):
        for store in ("memory", "sqlite", "none"):
            best = saturation(results, transport, store)
            if best is None:
                continue
            engine = best.get("engine", "client")
            closed = _closed(load, transport, store, engine)
            sat_rows.append((transport, store, *cells(best, closed, generator_name(engine))))
            product = client_saturation(results, transport, store)
            if engine != "client" and product is not None:  # what the product client reaches
                sat_rows.append((transport, store, *cells(product, product, PRODUCT_ROW)))
    head = ["transport", "store", "generator", "in flight", "saturation /s", f"{TIMES} {GRPC}"]
    head += PER_CORE_HEAD
    head += ["client CPU µs/op", "closed p50 µs", "closed p99 µs", "limited by"]
    head += INTERFERENCE_HEAD
    parts.append(table(head, sat_rows))
    if "load.png" in images:
        parts.append("\n![latency and throughput vs offered load](load.png)\n")
    if "cpu_per_op.png" in images:
        parts.append("\n![CPU time per operation](cpu_per_op.png)\n")
    rank = ranks(results)
    open_rows = sorted(
        (r for r in load if r["mode"] == "open"),
        key=lambda r: (rank(r["transport"]), r["store"], r["offered_per_s"] or 0),
    )
    if open_rows:
        head = ["transport", "store", "generator", "offered /s", "achieved /s", "p50 µs"]
        head += ["p99 µs", "p99.9 µs", *PER_CORE_HEAD, "lag p99 µs", "timeouts", "overloaded"]
        head += INTERFERENCE_HEAD
        rows = [
            (
                r["transport"],
                r["store"],
                generator_name(r.get("engine", "client")),
                _fmt_rate(r["offered_per_s"]),
                _fmt_rate(r["achieved_per_s"]),
                _fmt_us(r["p50_us"]),
                _fmt_us(r["p99_us"]),
                _fmt_us(r["p999_us"]),
                *per_core_cells(r),
                _fmt_us(r.get("dispatch_lag_p99_us")),
                r.get("timeouts", 0),
                r.get("overloaded", False),
                *interference(r),
            )
            for r in open_rows
        ]
        parts.append("\n### Open-loop steps\n")
        parts.append(table(head, rows))
    skipped = results.get("meta", {}).get("skipped_steps") or []
    if skipped:
        names = ", ".join(re.sub(r"^r\d+ ", "", s["step"]) for s in skipped)  # no round
        parts.append(
            "\nNot run: each climb stops after its first step past saturation (it served less "
            "than 90 % of its offered rate, overloaded or timed out), so the higher rates of "
            f"that climb would only have measured a longer queue: {names}.\n"
        )
    return "\n".join(parts)


__all__ = [
    "GENERATORS",
    "GENERATOR_LIMITED",
    "PER_CORE_HEAD",
    "SATURATED",
    "generator_name",
    "limited_by",
    "load_section",
    "per_core_cells",
]
