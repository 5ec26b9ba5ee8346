"""The load generator judged: its own ceiling against a null server, which load rows it limited,
and each transport's saturation by a latency bound (issue 10 item 3, issue 12 item 3).

* **Ceiling.** Each lean generator drives ``null_echo`` (a responder that writes back whatever
  arrives) in a closed loop, then at open-loop rates stepped up to that figure: the echo
  generator (bench/loadgen.py, the reference echo rows), the frame generator
  (bench/refs/lean_load.py, the custom-framed chat rows: it reads its echoed SEND frames back
  as the replies) and the WebSocket generator (bench/refs/lean_ws.py, the websocket and
  ws_echo rows: it reads its own masked frames back). A ceiling is the highest offered rate
  the generator still sent on schedule (>= 99 % of the schedule, queueing p99 <=
  ``ON_TIME_US``). The product's clients
  (the other chat rows) are generators too: their ceiling is estimated from their own CPU
  per request in the closed-loop step (one vCPU / client CPU per op), since a null *chat*
  server would test nothing real.
* **Limited by.** An open-loop row is the generator's when the generator fell behind its
  schedule while the server's vCPU still had room (< ``SERVER_BUSY``); the server's when the
  server's vCPU was full.
* **Saturation by a bound.** For each transport and store: the highest offered rate at which
  the generator sent >= 99 % of its schedule, nothing timed out, and p99 (from the intended
  send time) stayed under each of ``BOUNDS_US``. Queueing delay (intended -> sent) and
  service time (sent -> reply) are reported apart, as Nighthawk does.

The generator and the server share this 2-vCPU machine: the server is pinned to one vCPU, the
generator (one worker process) to the other, as everywhere in the bench.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.load import CLIENT, FRAMES, LEAN, WS
from bench.markdown import fmt_rate, fmt_us, table
from bench.noise import disturbance, disturbed

if TYPE_CHECKING:
    from bench.run_steps import Step
    from bench.runner import BenchRun

log = logging.getLogger(__name__)

Row = dict[str, Any]

#: The two p99 bounds saturation is read at (µs): interactive, and merely usable.
BOUNDS_US = (10_000.0, 100_000.0)
#: Share of the schedule the generator must have sent for a step to count.
MIN_SENT = 0.99
#: Queueing p99 (µs) under which the generator counts as on schedule.
ON_TIME_US = 1_000.0
#: Server vCPU utilisation from which a step is the server's limit, not the generator's.
SERVER_BUSY = 0.9
#: Work not ours (vCPUs: other processes' or the hypervisor's steal) from which a step's limit
#: is the crowded machine, not either side: on 2 vCPUs, half of one taken starves whichever
#: side it lands on.
CROWDED_VCPUS = 0.5
#: The null responder the generator's ceiling is measured against (bench/refs/null_echo.py).
NULL = "null_echo"
#: The lean generators, each with its ceiling: the echo one (bench/loadgen.py, the reference
#: echo rows), the frame one (bench/refs/lean_load.py, the custom-framed chat rows) and the
#: WebSocket one (bench/refs/lean_ws.py, the websocket and ws_echo rows).
ENGINES = (LEAN, FRAMES, WS)
#: What the report calls each engine (bench/load.py's names).
GENERATOR_NAMES = {
    CLIENT: "product client",
    LEAN: "lean echo",
    FRAMES: "lean frames",
    WS: "lean websocket",
}


@dataclass(frozen=True)
class CeilingPlan:
    connections: int
    depth: int
    closed_s: float
    open_s: float
    fractions: tuple[float, ...]  # open-loop rates as fractions of the closed-loop figure
    #: The websocket generator's climb, where it differs: the rows it drives run at tens of
    #: thousands a second (the websocket server, ws_echo), so three low steps show its margin
    #: over them and keep the full bench in its budget.
    ws_fractions: tuple[float, ...] | None = None

    def climb(self, engine: str) -> tuple[float, ...]:
        """The open-loop fractions of ``engine``'s climb."""
        return self.ws_fractions if engine == WS and self.ws_fractions else self.fractions


CEILING_PLANS = {
    # the climb stops after the first step the generator could not keep (kept_schedule)
    "full": CeilingPlan(4, 64, 1.5, 1.5, (0.1, 0.2, 0.35, 0.5, 0.7), (0.05, 0.1, 0.2)),
    # quick: one open step at a tenth of the closed loop (against null_echo the closed loop
    # batches deep, up to ~1.5 M/s on a quiet machine: a fifth of it was past both ceilings)
    "quick": CeilingPlan(4, 64, 0.5, 0.5, (0.1,)),
    "tiny": CeilingPlan(2, 8, 0.2, 0.2, (0.5,)),
}


# -- measuring -------------------------------------------------------------------------------
def steps(run: BenchRun) -> list[Step]:
    """The ceiling scene's steps: one, which starts and stops its own null server."""
    from bench import run_phases
    from bench.run_steps import Step

    def step() -> None:
        measure_ceiling(run)

    return [Step("generator ceiling (null_echo)", step, "generator", phase=run_phases.GENERATOR)]


def measure_ceiling(run: BenchRun) -> None:
    """Each lean generator against null_echo: a closed loop, then open-loop steps climbing
    to it (the echo generator, then the frame generator)."""
    from bench.procs import RefServer, Worker

    plan = CEILING_PLANS.get(run.plan.mode, CEILING_PLANS["quick"])
    rows: list[Row] = run.results.setdefault("generator", [])
    server = RefServer(NULL, cpu=run.main.server_cpu)
    server.start()
    try:
        with Worker(cpu=run.main.client_cpu) as worker:
            assert server.address is not None
            for engine in ENGINES:
                base = {
                    "kind": "load",
                    "target": {
                        "kind": "echo",
                        "ref": NULL,
                        "address": server.address,
                        "server_pid": server.pid,
                    },
                    "connections": plan.connections,
                    "body": run.body,
                    "prefix": "g",
                    "frames": engine != LEAN,
                    "engine": engine,  # (bench/load.py: which lean generator drives null_echo)
                }
                _climb(worker, base, plan, run.plan.max_inflight, rows, plan.climb(engine))
    finally:
        server.stop()


def _climb(
    worker: Any,
    base: Row,
    plan: CeilingPlan,
    max_inflight: int,
    rows: list[Row],
    fractions: tuple[float, ...],
) -> None:
    """One generator's closed loop against the null server, then its open-loop climb."""
    closed = worker.run(
        {**base, "mode": "closed", "depth": plan.depth, "duration_s": plan.closed_s},
        timeout=plan.closed_s * 3 + 60,
    )[0]
    rows.append({"transport": NULL, "store": "none", "fraction": None, **closed})
    top = closed["achieved_per_s"]
    for fraction in fractions:
        job = {
            **base,
            "mode": "open",
            "rate": round(top * fraction, 1),
            "duration_s": plan.open_s,
            "max_inflight": max_inflight,
            "drain_s": 2.0,
        }
        row = worker.run(job, timeout=plan.open_s * 3 + 60)[0]
        rows.append({"transport": NULL, "store": "none", "fraction": fraction, **row})
        if not kept_schedule(row) and not disturbed(row):
            break  # past the generator's ceiling: higher rates only queue longer


# -- reading ---------------------------------------------------------------------------------
def kept_schedule(row: Row) -> bool:
    """The generator sent >= MIN_SENT of the schedule and nothing timed out or overflowed."""
    sent = row.get("sent_fraction")
    if sent is None:  # a row from before the field: the schedule was rate x duration
        scheduled = (row.get("offered_per_s") or 0) * (row.get("duration_s") or 0)
        sent = row["sent"] / scheduled if scheduled else 0.0
    return sent >= MIN_SENT and not row.get("timeouts") and not row.get("overloaded")


def _engine(row: Row) -> str:
    return str(row.get("engine") or LEAN)  # (rows from before the field: the echo generator)


def ceiling(results: dict[str, Any], engine: str = LEAN) -> Row | None:
    """The open-loop step of ``engine`` against the null server with the highest offered rate
    it kept to (on schedule); None if it never did."""
    rows = [
        r
        for r in results.get("generator", [])
        if r["mode"] == "open"
        and _engine(r) == engine
        and kept_schedule(r)
        and (r.get("queue_p99_us") or 0) <= ON_TIME_US
    ]
    return max(rows, key=lambda r: r["offered_per_s"], default=None)


def generator_closed(results: dict[str, Any], engine: str = LEAN) -> Row | None:
    """The closed-loop step of ``engine`` against the null server."""
    return next(
        (r for r in results.get("generator", []) if r["mode"] == "closed" and _engine(r) == engine),
        None,
    )


def saturation_by_bound(
    results: dict[str, Any], transport: str, store: str, bound_us: float
) -> Row | None:
    """The open-loop step with the highest offered rate that kept to its schedule with p99
    under ``bound_us``; None if no step did."""
    rows = [
        r
        for r in results.get("load", [])
        if (r["transport"], r["store"], r["mode"]) == (transport, store, "open")
        and kept_schedule(r)
        and r.get("p99_us") is not None
        and r["p99_us"] <= bound_us
    ]
    return max(rows, key=lambda r: r["offered_per_s"], default=None)


def limited_by(row: Row) -> str:
    """Whose limit an open-loop step shows: "server", "generator", "machine" (other processes
    or other guests took the vCPUs: neither side had them) or "" (no limit reached)."""
    util = row.get("server_cpu_util")
    if util is not None and util >= SERVER_BUSY:
        return "server"
    if disturbance([row]) >= CROWDED_VCPUS:
        return "machine"
    late = (row.get("queue_p99_us") or 0) > ON_TIME_US or not kept_schedule(row)
    if late and (util is None or util < SERVER_BUSY):
        # In-process (loopback) rows have one process: the generator *is* the server.
        return "generator" if row.get("client_cpu_util") is not None else "the process"
    return ""


def _groups(results: dict[str, Any]) -> list[tuple[str, str]]:
    from bench.targets import order

    seen = {(r["transport"], r["store"]) for r in results.get("load", []) if r["mode"] == "open"}
    rank = {name: i for i, name in enumerate(order(results))}
    return sorted(seen, key=lambda g: (rank.get(g[0], 99), g[1]))


def _closed(
    results: dict[str, Any], transport: str, store: str, engine: str | None = None
) -> Row | None:
    """The closed-loop row of this transport and store (of ``engine``'s, when given and the
    run has one)."""
    rows = [
        r
        for r in results.get("load", [])
        if (r["transport"], r["store"], r["mode"]) == (transport, store, "closed")
    ]
    return next((r for r in rows if _engine_of(r) == engine), rows[0] if rows else None)


def section(results: dict[str, Any], images: Sequence[str]) -> str:
    """REPORT.md: the generators' ceilings, saturation by a bound, which rows they limited."""
    if not results.get("load") and not results.get("generator"):
        return ""
    parts = ["## The load generator, and saturation by a latency bound\n"]
    parts.append(
        "Server and generator share this 2-vCPU machine: the server under test is pinned to one "
        "vCPU, the generator (one worker process) to the other, so a second generator process "
        "would only share the same vCPU; the generator stays out of the way by costing less "
        "per request than the server. Four generators (the *generator* column): the "
        "reference echo rows (`tcp_echo`, `tcp_floor`) are driven by the *lean echo* "
        "generator (bench/loadgen.py: raw frames, one write per connection per loop turn, no "
        "task per request); the chat transports in the custom protocol's frames (`custom`, "
        "`protobuf-tcp`) by the *lean frame* generator (bench/refs/lean_load.py: the same "
        "design over the transport's own SEND frames, replies matched in order by request "
        "id, the server's whole pipeline in flight); `websocket` and `ws_echo` by the *lean "
        "websocket* generator (bench/refs/lean_ws.py: the same design over masked WebSocket "
        "frames encoded once per request id by the `websockets` library's sans-IO protocol, "
        "replies matched by the start of their JSON text); the other chat rows by the "
        "*product client* (ChatClient), which is also measured in the closed loop of the "
        "lean-driven chat transports to show what it costs.\n"
    )
    for engine in ENGINES:
        closed, top = generator_closed(results, engine), ceiling(results, engine)
        if closed is None:
            continue
        parts.append(
            f"**Generator ceiling, {GENERATOR_NAMES[engine]}**, against `{NULL}` (writes back "
            f"whatever arrives): closed loop {fmt_rate(closed['achieved_per_s'])} requests/s "
            f"at {fmt_us(closed.get('client_cpu_us_per_op'))} µs of generator CPU per request "
            f"(generator vCPU {_pct(closed.get('client_cpu_util'))} busy, other work on the "
            f"machine {closed.get('other_vcpus', '—')} vCPUs); open loop, the highest offered "
            f"rate kept on schedule (≥ {MIN_SENT:.0%} sent, queueing p99 ≤ "
            f"{ON_TIME_US / 1000:g} ms): "
            + (
                f"**{fmt_rate(top['offered_per_s'])}/s** (p99 {fmt_us(top['p99_us'])} µs)."
                if top
                else "**none of the steps** (the generator fell behind at every rate tried)."
            )
            + "\n"
        )
    rows = []
    for transport, store in _groups(results):
        mine = [
            r
            for r in results["load"]
            if (r["transport"], r["store"], r["mode"]) == (transport, store, "open")
        ]
        engine = _engine_of(mine[0]) if mine else CLIENT
        closed_row = _closed(results, transport, store, engine)
        client_us = None if closed_row is None else closed_row.get("client_cpu_us_per_op")
        top = ceiling(results, engine) if engine != CLIENT else None
        # one vCPU over the generator's CPU per request in this row's closed loop (it does
        # not spin there): for a lean generator a second gauge beside its null-server
        # ceiling, since a server that writes each reply apart costs it a read per reply
        # where null_echo's echo comes back in the generator's own batches
        own = "≈ " + fmt_rate(1e6 / client_us) if client_us else "—"
        if top is not None:
            estimate = fmt_rate(top["offered_per_s"]) + (f" ({own} here)" if client_us else "")
        else:
            estimate = own
        sats = [saturation_by_bound(results, transport, store, b) for b in BOUNDS_US]
        limited = [r for r in mine if limited_by(r) == "generator"]
        crowded = [r for r in mine if limited_by(r) == "machine"]
        rows.append(
            [
                transport,
                store,
                GENERATOR_NAMES.get(engine, engine),
                estimate,
                fmt_rate(None if closed_row is None else closed_row["achieved_per_s"]),
                *[fmt_rate(None if s is None else s["offered_per_s"]) for s in sats],
                *[_split(s) for s in sats[:1]],
                ", ".join(fmt_rate(r["offered_per_s"]) for r in limited) or "none",
                ", ".join(fmt_rate(r["offered_per_s"]) for r in crowded) or "none",
            ]
        )
    head = ["transport", "store", "generator", "generator ceiling /s", "closed-loop /s"]
    head += [f"saturation p99 ≤ {b / 1000:g} ms /s" for b in BOUNDS_US]
    head += ["at the 10 ms point: queueing p99 / service p99 µs"]
    head += ["generator-limited steps (offered /s)", "crowded-machine steps (offered /s)"]
    parts.append(
        ""
        if not rows
        else "\n*Saturation by a bound*: the highest offered rate (of the open-loop steps) at "
        "which "
        f"the generator sent ≥ {MIN_SENT:.0%} of its schedule, nothing timed out and p99 from "
        "the intended send time stayed under the bound (— : no step did). *Generator ceiling*: "
        "for a lean generator its null-server figure above, and in brackets one vCPU ÷ its "
        "CPU per request in this row's closed loop (*here*: a server that writes each reply "
        "apart costs the generator a read per reply); for the product's client that second "
        "figure alone. *Closed-loop /s*: the closed-loop "
        "step of the same generator. *Generator-limited steps*: open-loop "
        f"steps where the generator fell behind (queueing p99 > {ON_TIME_US / 1000:g} ms or "
        f"< {MIN_SENT:.0%} sent) while the server's vCPU was under {SERVER_BUSY:.0%} busy: "
        "those rows show the generator, not the server. *Crowded-machine steps*: other "
        f"processes used ≥ {CROWDED_VCPUS} vCPUs meanwhile, so neither side had its vCPU: "
        "distrust them.\n"
    )
    if rows:
        parts.append(table(head, rows))
    parts.append(_still_limited(results))
    if "saturation.png" in images:
        parts.append("\n![p99 vs offered rate with the saturation points](saturation.png)\n")
    return "\n".join(parts)


def _engine_of(row: Row) -> str:
    return str(row.get("engine") or CLIENT)


def _still_limited(results: dict[str, Any]) -> str:
    """One paragraph: the closed-loop rows whose generator, not the server, set the rate."""
    from bench.report_load import GENERATOR_LIMITED
    from bench.report_load import limited_by as closed_limited_by

    closed = [r for r in results.get("load", []) if r["mode"] == "closed"]
    if not closed:
        return ""
    mine = [
        f"{r['transport']}/{r['store']} ({GENERATOR_NAMES.get(_engine_of(r), _engine_of(r))})"
        for r in closed
        if closed_limited_by(r) == GENERATOR_LIMITED
    ]
    return (
        "\n*Closed-loop rows still limited by their generator* (its vCPU ≥ 90 % busy and "
        "busier than the server's): "
        + (", ".join(mine) if mine else "none")
        + ". A closed-loop row where *neither* side is saturated is bounded by its requests "
        "in flight ÷ the latency (Little's law: the product client's 4 x 8), or, on the "
        "SQLite store, by the commits; the saturation figures read the lean generator's "
        "rows where a transport has them.\n"
    )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _split(row: Row | None) -> str:
    if row is None:
        return "—"
    return f"{fmt_us(row.get('queue_p99_us'))} / {fmt_us(row.get('service_p99_us'))}"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """p99 (from the intended time) vs offered rate per transport, memory/none store, with the
    bounds drawn and each transport's saturation point at each bound marked."""
    from bench.plots import _save, _styler, plt

    groups = [g for g in _groups(results) if g[1] != "sqlite"]
    if not groups:
        return None
    style = _styler(results)
    fig, (lat, split) = plt.subplots(1, 2, figsize=(13, 5.2))
    for transport, store in groups:
        mine = sorted(
            (
                r
                for r in results["load"]
                if (r["transport"], r["store"], r["mode"]) == (transport, store, "open")
                and r.get("p99_us")
            ),
            key=lambda r: r["offered_per_s"],
        )
        if not mine:
            continue
        s = style(transport)
        xs = [r["offered_per_s"] for r in mine]
        lat.plot(xs, [r["p99_us"] / 1000 for r in mine], marker="o", markersize=3, **s)
        for bound, marker in zip(BOUNDS_US, ("*", "D"), strict=True):
            sat = saturation_by_bound(results, transport, store, bound)
            if sat is not None:
                lat.plot(
                    sat["offered_per_s"],
                    sat["p99_us"] / 1000,
                    marker=marker,
                    markersize=12 if marker == "*" else 8,
                    color=s["color"],
                    markeredgecolor="black",
                    linestyle="none",
                )
        if any(r.get("service_p99_us") for r in mine):
            service = {**s, "linestyle": "-"}
            split.plot(xs, [(r.get("service_p99_us") or 0) / 1000 for r in mine], **service)
            q = {**s, "linestyle": ":", "label": None}
            split.plot(xs, [max(r.get("queue_p99_us") or 0, 1) / 1000 for r in mine], **q)
    for bound in BOUNDS_US:
        lat.axhline(bound / 1000, color="grey", linewidth=0.8, linestyle="--")
        lat.text(
            0.01,
            bound / 1000,
            f"{bound / 1000:g} ms",
            va="bottom",
            fontsize=8,
            transform=lat.get_yaxis_transform(),
        )
    for ax in (lat, split):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (requests/s, log)")
        ax.grid(True, which="both", alpha=0.3)
    lat.set_ylabel("p99 from the intended send time (ms, log)")
    lat.set_title("p99 vs offered load; ★ saturation at p99 ≤ 10 ms, ◆ at ≤ 100 ms")
    lat.legend(fontsize=7, ncol=2)
    split.set_ylabel("p99 (ms, log)")
    split.set_title("Service time (sent → reply, solid) vs queueing (intended → sent, dotted)")
    return _save(fig, path)


__all__ = [
    "BOUNDS_US",
    "CEILING_PLANS",
    "CROWDED_VCPUS",
    "ENGINES",
    "GENERATOR_NAMES",
    "ceiling",
    "kept_schedule",
    "limited_by",
    "measure_ceiling",
    "plot",
    "saturation_by_bound",
    "section",
    "steps",
]
