"""A population: many concurrent logged-in sessions per transport, each with its push stream,
under a mixed workload at fixed offered rates (issue 10 item 4).

The scene. ``sessions`` accounts sign up, one session each, every one reading its pushes and
acking each (Rule 11); the sessions are lean ones where the load steps have a lean generator
for the transport, else the product's ChatClient (bench/population_members.py: the clients
must not be what limits the scene, issue 10 item 3). Then, for
each offered rate (sends per second), an open-loop schedule (bench/load.py: every operation
has an intended time fixed in advance; latency counts from it) issues a seeded mix:

* ``send`` from a random session to 1-10 distinct random other users (so each send is pushed
  to 1-10 live sessions, each of which acks it);
* ``list_accounts`` (one page of 10) at ``list_share`` of the send rate.

Measured per rate: push latency (intended send time -> the recipient's session reads it;
every recipient is a sample), the send round trip, errors (failed calls, pushes missing
after the drain), CPU of both processes, and once per transport the server's RSS per session
(RSS after the sessions logged in minus before, / sessions; the memory store's account rows
are included). A rate whose step overloaded (the generator's in-flight cap, a push p99 over
``GIVE_UP_US``, or > 1 % of pushes missing) ends the transport's climb.

The server runs with the memory store (the protocol's cost, as the load table's memory rows),
pinned to the server vCPU with a per-address connection cap that admits the population; every
client runs in one worker process pinned to the other vCPU (a second process would share that
vCPU). Loopback has no server process: its rows are one process, clients included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.markdown import fmt_rate, fmt_us, table

if TYPE_CHECKING:
    from bench.population_members import Member
    from bench.run_steps import Step
    from bench.runner import BenchRun

log = logging.getLogger(__name__)

Row = dict[str, Any]

#: Issue 10's target: push p99 under 50 ms at 1,000 sessions and 1,000 sends/s on custom.
TARGET: dict[str, Any] = {
    "transport": "custom",
    "sessions": 1000,
    "sends_per_s": 1000.0,
    "push_p99_us": 50_000,
}
#: A step whose push p99 passes this is hopelessly behind: higher rates are not tried.
GIVE_UP_US = 1_000_000
#: Past the target's rate, a step whose push p99 passes this is saturated (the larger of
#: the bounds issue 12 reports saturation by): higher rates would only show a longer queue.
PAST_TARGET_US = 100_000
#: Share of expected pushes that may be missing before a step counts as overloaded.
MAX_MISSING = 0.01
#: The body of every send: the op's index, then filler to 32 bytes (the bench's body size).
BODY_DIGITS = 10


@dataclass(frozen=True)
class PopulationPlan:
    sessions: int
    rates: tuple[float, ...]  # offered sends per second, climbed in order
    step_s: float
    transports: tuple[str, ...] | None  # None: every transport of the run
    list_share: float = 0.1  # list_accounts per send
    max_recipients: int = 10
    drain_s: float = 3.0


POPULATION_PLANS = {
    # 1.5 s a rate: 1,500 sends and ~8,000 push samples at the target's rate
    "full": PopulationPlan(1000, (250.0, 1000.0, 2000.0), 1.5, None),
    "quick": PopulationPlan(100, (200.0,), 0.5, ("custom",)),
    "tiny": PopulationPlan(20, (50.0,), 0.5, ("custom",)),
}


# -- the worker's job ------------------------------------------------------------------------
def _rss(pid: int) -> int:
    import psutil  # type: ignore[import-untyped]

    rss: int = psutil.Process(pid).memory_info().rss
    return rss


@dataclass
class _Op:
    sender: int  # index of the sending session
    recipients: tuple[str, ...]  # empty: a list_accounts


def _workload(seed: int, count: int, names: Sequence[str], plan: PopulationPlan) -> list[_Op]:
    """The seeded mix: ``list_share`` of the ops are list_accounts, the rest sends to 1..max
    distinct other users."""
    rng = random.Random(seed)
    n = len(names)
    ops = []
    for _ in range(count):
        sender = rng.randrange(n)
        if rng.random() < plan.list_share / (1 + plan.list_share):
            ops.append(_Op(sender, ()))
            continue
        k = rng.randint(1, min(plan.max_recipients, n - 1))
        picks = rng.sample(range(n - 1), k)  # other users: skip the sender's own index
        ops.append(_Op(sender, tuple(names[p + (p >= sender)] for p in picks)))
    return ops


class _Scene:
    """The logged-in population of one job, and the pushes its sessions have seen."""

    def __init__(self, transport: str, server_pid: int, plan: PopulationPlan) -> None:
        from bench.stats import new_histogram

        self.transport, self.server_pid, self.plan = transport, server_pid, plan
        self.members: Sequence[Member] = ()
        self.engine = ""
        self.intended: dict[int, int] = {}  # op index -> intended send time (ns), this step
        self.pushes = new_histogram()
        self.seen = 0
        self.expected = 0
        self.pushed = asyncio.Event()  # set when seen reaches expected

    def pushed_body(self, body: str) -> None:
        """A session read a delivery (bench/population_members.py ``OnPush``)."""
        from bench.stats import record_ns

        now = time.perf_counter_ns()
        at = self.intended.get(int(body[:BODY_DIGITS]))
        if at is not None:  # a push of an earlier step arriving late is not counted
            record_ns(self.pushes, now - at)
            self.seen += 1
            if self.seen >= self.expected:
                self.pushed.set()

    async def step(self, seed: int, rate: float, first: int, names: list[str]) -> Row:
        """One offered rate; op indices start at ``first`` (never reused across steps)."""
        from bench.endpoints import CpuMeter, cpu_fields
        from bench.load import OpenLoopSchedule, run_open_loop, timing_fields
        from bench.stats import summarize

        plan = self.plan
        ops_rate = rate * (1 + plan.list_share)
        count = max(1, round(ops_rate * plan.step_s))
        ops = _workload(seed, count, names, plan)
        schedule = OpenLoopSchedule(ops_rate, time.perf_counter_ns() + 5_000_000, count)
        self.intended.clear()
        self.pushes.reset()
        self.seen = self.expected = 0
        self.pushed.clear()
        filler = "x" * (32 - BODY_DIGITS)

        def issue(i: int) -> Awaitable[Any]:
            op = ops[i]
            client = self.members[op.sender]
            if not op.recipients:
                return client.list_accounts("*", limit=10)
            self.intended[first + i] = schedule.intended_ns(i)
            self.expected += len(op.recipients)
            return client.send(op.recipients, f"{first + i:0{BODY_DIGITS}d}{filler}")

        meter = CpuMeter(self.server_pid)
        result = await run_open_loop(
            schedule,
            issue,
            max_inflight=max(256, round(ops_rate * 0.5)),
            deadline_ns=schedule.start_ns + int(plan.step_s * 1.5e9),
            drain_s=plan.drain_s,
        )
        # ``pushed`` was set whenever the pushes caught up with the sends issued so far, which
        # happens often while the step still issues sends; left set, the wait below would end
        # at once and the last sends' pushes (read after their replies) would count as missing.
        self.pushed.clear()
        if self.seen < self.expected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.pushed.wait(), plan.drain_s)
        cpu = meter.elapsed()
        push = summarize(self.pushes, with_hist=False)
        sends = sum(1 for i in range(result.sent) if ops[i].recipients)
        return {
            "transport": self.transport,
            "generator": self.engine,
            "store": "memory",
            "sessions": plan.sessions,
            "offered_sends_per_s": rate,
            "offered_ops_per_s": round(ops_rate, 1),
            "sends": sends,
            "list_accounts": result.sent - sends,
            "achieved_ops_per_s": round(result.achieved_per_s, 1),
            "overloaded": result.overloaded,
            "errors": result.errors,
            "timeouts": result.timeouts,
            "first_error": result.first_error,
            "pushes_expected": self.expected,
            "pushes": self.seen,
            "pushes_missing": max(0, self.expected - self.seen),
            "push_p50_us": push["p50_us"],
            "push_p90_us": push["p90_us"],
            "push_p99_us": push["p99_us"],
            "push_p999_us": push["p999_us"],
            "push_max_us": push["max_us"],
            "in_process": self.server_pid == os.getpid(),
            **{f"op_{k}": v for k, v in timing_fields(result).items() if k != "hist"},
            **cpu_fields(cpu, result.completed),
        }


async def run_population(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Log the population in, then climb the offered rates; one row per rate tried."""
    from bench.endpoints import PASSWORD
    from bench.population_members import Population, log_in

    plan = PopulationPlan(**{**job["plan"], "rates": tuple(job["plan"]["rates"])})
    target = job["target"]
    server_pid = int(target.get("server_pid") or os.getpid())  # (loopback: this process)
    names = [f"{job['prefix']}u{i}" for i in range(plan.sessions)]
    rows: list[dict[str, Any]] = []
    scene = _Scene(target["transport"], server_pid, plan)
    population: Population | None = None
    try:
        rss_before = _rss(server_pid)
        started = time.perf_counter()
        population = await log_in(
            target, names, PASSWORD, scene.pushed_body, engine=job.get("generator")
        )
        login_s = time.perf_counter() - started
        scene.members, scene.engine = population.members, population.engine
        await asyncio.sleep(0.2)  # let the server settle its buffers before reading RSS
        rss_after = _rss(server_pid)
        first = 0
        for step, rate in enumerate(plan.rates):
            row = await scene.step(job.get("seed", 1) + step, rate, first, names)
            first += round(rate * (1 + plan.list_share) * plan.step_s) + 1
            row.update(
                rss_per_session_kib=round((rss_after - rss_before) / plan.sessions / 1024, 1),
                server_rss_mib=round(rss_after / 2**20, 1),
                login_s=round(login_s, 2),
            )
            rows.append(row)
            if overloaded(row) or saturated_past_target(row, rate):
                break
    finally:
        if population is not None:
            with contextlib.suppress(Exception):
                await population.aclose()
    return rows


def saturated_past_target(row: Row, rate: float) -> bool:
    """At or above the target's rate (which every transport is measured at, whatever its
    figure), a push p99 over PAST_TARGET_US: no higher rate is tried."""
    p99 = row.get("push_p99_us")
    return rate >= TARGET["sends_per_s"] and p99 is not None and p99 > PAST_TARGET_US


def overloaded(row: Row) -> bool:
    """The step fell hopelessly behind: no higher rate is tried."""
    expected = row.get("pushes_expected") or 0
    missing = row.get("pushes_missing") or 0
    p99 = row.get("push_p99_us")
    return bool(
        row.get("overloaded")
        or (expected and missing / expected > MAX_MISSING)
        or (p99 is not None and p99 > GIVE_UP_US)
    )


# -- the bench's steps -----------------------------------------------------------------------
def steps(run: BenchRun) -> list[Step]:
    """One step per transport (each starts and stops its own server)."""
    from bench import run_phases
    from bench.run_steps import Step

    plan = POPULATION_PLANS.get(run.plan.mode, POPULATION_PLANS["quick"])
    wanted = [t for t in (plan.transports or run.chats) if t in run.chats]
    return [
        Step(
            f"{t}: population x{plan.sessions}",
            _bind(run, t, plan),
            f"population/{t}",
            phase=run_phases.POPULATION,
        )
        for t in wanted
    ]


def _bind(run: BenchRun, transport: str, plan: PopulationPlan) -> Callable[[], None]:
    def step() -> None:
        measure(run, transport, plan)

    return step


def measure(
    run: BenchRun, transport: str, plan: PopulationPlan, generator: str | None = None
) -> list[Row]:
    """Start the transport's server (memory store, a cap that admits the population), run the
    population job in a fresh worker, stop both; appends the rows to results["population"].
    ``generator``: the sessions' kind (bench/population_members.py), if not the default."""
    from dataclasses import asdict

    from bench.procs import Worker
    from transports import registry
    from wirechat.launch import ServerProcess

    server = None
    if registry.entry(transport).wire:
        cap = str(plan.sessions * 2 + 64)  # every session's connection, and room to spare
        server = ServerProcess(
            [transport],
            ":memory:",
            extra_args=["--max-connections-per-address", cap],
            cpu=run.main.server_cpu,
        ).start()
        target: dict[str, Any] = {
            "kind": "chat",
            "transport": transport,
            "address": server.addresses[transport],
            "server_pid": server.pid,
        }
    else:
        target = {"kind": "chat", "transport": transport, "db": ":memory:"}
    job = {
        "kind": "population",
        "target": target,
        "plan": asdict(plan),
        "prefix": f"pop{os.getpid() % 1000}",
        "seed": 20240601,
        "generator": generator,
    }
    budget = plan.sessions * 0.1 + len(plan.rates) * (plan.step_s * 2 + plan.drain_s * 2) + 120
    try:
        with Worker(cpu=run.main.client_cpu) as worker:
            rows = worker.run(job, timeout=budget)
    finally:
        if server is not None:
            server.stop()
    run.results.setdefault("population", []).extend(rows)
    return rows


# -- reading ---------------------------------------------------------------------------------
def target_row(results: dict[str, Any]) -> Row | None:
    """The row issue 10's target is read from (custom, 1,000 sessions, 1,000 sends/s)."""
    return next(
        (
            r
            for r in results.get("population", [])
            if r["transport"] == TARGET["transport"]
            and r["sessions"] == TARGET["sessions"]
            and r["offered_sends_per_s"] == TARGET["sends_per_s"]
        ),
        None,
    )


def section(results: dict[str, Any], images: Sequence[str]) -> str:
    """REPORT.md: the population table, and the target's verdict."""
    rows = results.get("population") or []
    if not rows:
        return ""
    from bench.load import SPIN_NS
    from bench.loadgen_scene import ON_TIME_US, SERVER_BUSY
    from bench.report_load import GENERATOR_LIMITED
    from bench.targets import order

    rank = {name: i for i, name in enumerate(order(results))}
    rows = sorted(rows, key=lambda r: (rank.get(r["transport"], 99), r["offered_sends_per_s"]))
    sessions = sorted({r["sessions"] for r in rows})
    parts = [
        "## A population: many logged-in sessions, a mixed workload\n",
        f"{', '.join(f'{s:,}' for s in sessions)} concurrent sessions per transport (one "
        "account each, every one reading its push stream and acking each message), memory "
        "store. At each offered rate of sends an open-loop schedule issues a seeded mix: sends "
        "from a random session to 1-10 random other users, plus list_accounts (a page of 10) "
        "at a tenth of the send rate; each delivery is acked by its recipient. *Generator*: "
        "what the sessions are: `lean-frames` and `lean-ws`, lean sessions of the load steps' "
        "design (bench/refs/lean_population*.py: one asyncio Protocol a session over the "
        "transport's own codec, no task or queue a session), where the load steps have one; "
        "`client`, the product's ChatClient (a task a session reading `messages()`). *Push*: "
        "from the send's intended time to the recipient's session reading it (the push "
        "decoded; for `client`, `messages()` yielding it; every recipient a sample). "
        "*Errors*: failed calls; *missing*: pushes not seen by the end of the drain. "
        "*RSS/session*: the server's RSS growth while the population logged in, ÷ sessions "
        "(loopback: one process, clients included). A rate that overloaded ends the climb. "
        "Server and clients pinned to different vCPUs; all clients in one worker process. "
        "*Dispatch p99*: how late the generator issued its operations (from each one's "
        "intended time; it is inside every latency figure). *Client CPU* counts the "
        "dispatcher's busy-poll of the loop in the last "
        f"{SPIN_NS / 1e6:g} ms before each operation (bench/load.py), so it reads near 100% "
        "from about 1,000 operations a second whatever the sessions' work. *Limited by*, "
        f"by the open-loop rule of the load table: the server, when its vCPU was at least "
        f"{SERVER_BUSY:.0%} busy; **generator**, when the clients' process fell behind its "
        f"schedule (dispatch p99 over {ON_TIME_US / 1000:g} ms, or the schedule not kept), "
        "so that row's latencies show the clients as much as the server; *machine*, when "
        "other work took the vCPUs; *overloaded*: the step fell behind (the CPU figures then "
        "average over the wait for pushes that never came, and say nothing of what limited "
        "it).\n",
    ]
    target = target_row(results)
    if target is None:
        verdict = "not measured in this run"
    else:
        p99 = target.get("push_p99_us")
        ok = p99 is not None and p99 < TARGET["push_p99_us"] and not target.get("pushes_missing")
        verdict = f"push p99 {fmt_us(p99)} µs — **{'PASS' if ok else 'MISS'}**"
        if limited_by(target) == GENERATOR_LIMITED:
            verdict += (
                f" (the clients issued their sends late, dispatch p99 "
                f"{fmt_us(target.get('op_queue_p99_us'))} µs: the figure is the clients' as "
                "much as the server's)"
            )
    parts.append(
        f"Target (issue 10): push p99 < {TARGET['push_p99_us'] / 1000:g} ms at "
        f"{TARGET['sessions']:,} sessions and {TARGET['sends_per_s']:,.0f} sends/s on "
        f"`{TARGET['transport']}`: {verdict}.\n"
    )
    head = ["transport", "generator", "sessions", "offered sends/s", "achieved ops/s"]
    head += ["push p50 µs"]
    head += ["push p99 µs", "push p99.9 µs", "pushes", "missing", "errors", "op p99 µs"]
    head += ["dispatch p99 µs", "server CPU", "client CPU", "limited by", "RSS/session KiB"]
    head += ["other vCPUs"]
    table_rows = [
        [
            r["transport"],
            r.get("generator") or "client",  # (rows of runs before the lean sessions)
            r["sessions"],
            fmt_rate(r["offered_sends_per_s"]),
            fmt_rate(r["achieved_ops_per_s"]),
            fmt_us(r.get("push_p50_us")),
            fmt_us(r.get("push_p99_us")),
            fmt_us(r.get("push_p999_us")),
            r.get("pushes"),
            r.get("pushes_missing"),
            r.get("errors"),
            fmt_us(r.get("op_p99_us")),
            fmt_us(r.get("op_queue_p99_us")),
            _pct(r.get("server_cpu_util")),
            _pct(r.get("client_cpu_util")),
            "overloaded" if overloaded(r) else limited_by(r),
            r.get("rss_per_session_kib"),
            r.get("other_vcpus"),
        ]
        for r in rows
    ]
    parts.append(table(head, table_rows))
    if "population.png" in images:
        parts.append("\n![push latency vs offered rate, population](population.png)\n")
    return "\n".join(parts)


def limited_by(row: Row) -> str:
    """Whose limit a population step shows, by the load table's open-loop rule
    (bench/loadgen_scene.py ``limited_by``: the server's vCPU busy, the machine crowded, or
    the generator behind its schedule), "neither" if none. Not the clients' CPU: the open
    loop busy-polls before each operation, so their vCPU reads busy whatever their work."""
    from bench.loadgen_scene import limited_by as open_loop_limit
    from bench.report_load import GENERATOR_LIMITED

    view = {**row, **{k[3:]: v for k, v in row.items() if k.startswith("op_")}}
    limit = open_loop_limit(view)
    return GENERATOR_LIMITED if limit == "generator" else limit or "neither"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Push p50 (solid) and p99 (dotted) vs offered sends/s, one line per transport."""
    rows = results.get("population") or []
    if not rows:
        return None
    from bench.plots import _save, _styler, plt
    from bench.targets import order

    style = _styler(results)
    fig, ax = plt.subplots(figsize=(9, 5.2))
    for transport in order(results):
        mine = sorted(
            (r for r in rows if r["transport"] == transport and r.get("push_p50_us")),
            key=lambda r: r["offered_sends_per_s"],
        )
        if not mine:
            continue
        xs = [r["offered_sends_per_s"] for r in mine]
        s = style(transport)
        ax.plot(xs, [r["push_p50_us"] / 1000 for r in mine], marker="o", **s)
        ax.plot(
            xs,
            [r["push_p99_us"] / 1000 for r in mine],
            marker="^",
            **{**s, "linestyle": ":", "label": None},
        )
    ax.axhline(TARGET["push_p99_us"] / 1000, color="grey", linestyle="--", linewidth=0.8)
    ax.text(
        0.01,
        TARGET["push_p99_us"] / 1000,
        "target p99 (custom, 1,000 sends/s)",
        va="bottom",
        fontsize=8,
        transform=ax.get_yaxis_transform(),
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered sends/s (log)")
    ax.set_ylabel("push latency from intended send (ms, log)")
    sessions = max(r["sessions"] for r in rows)
    ax.set_title(f"Push latency with {sessions:,} sessions (p50 solid, p99 dotted)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


__all__ = [
    "POPULATION_PLANS",
    "TARGET",
    "PopulationPlan",
    "limited_by",
    "measure",
    "overloaded",
    "plot",
    "run_population",
    "saturated_past_target",
    "section",
    "steps",
    "target_row",
]
