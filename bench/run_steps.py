"""The steps of a bench run, in run order (bench/runner.py executes them).

1. ``plan.rounds`` rounds of latency. Each round starts a fresh worker (the client process) and
   visits every *unit* once, in an order shuffled with ``plan.seed`` (``meta.rounds`` records
   it): a reference row (its echo), a transport with one store (every op, push delivery, the
   lean client, the independent client), the same-vCPU rows. A unit starts its own server (or, with
   ``plan.servers_together``, adopts the one the round started for it at its start) and
   stops it. In
   ``plan.byte_checks`` rounds the wire transports also measure a few byte figures again. The
   last round also measures, on that round's servers, the load steps (measured once; no extra
   server start-up for them).
2. Bytes on the wire in full, every wire transport at once, each on a server of its own
   (BenchRun.sizes_all: nothing there is timed, and one transport's measurement is mostly
   quiet waits, which overlap).
3. The scenes that start their own servers: the durable share (memory and SQLite paired),
   the generator's ceiling, the population, the flame profiles, the TLS rows.
4. The payload sizes (no server).

Every step names its phase (bench/run_phases.py), so a run records where its time went.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import run_phases as ph
from bench.config import LEAN_TRANSPORT
from bench.procs import Placement, RefServer
from bench.refs import INDEPENDENT_TRANSPORTS
from transports import registry

if TYPE_CHECKING:
    from bench.runner import BenchRun
    from wirechat.launch import ServerProcess

#: The step that measures every wire transport's bytes on the wire at once, and its group.
BYTES_LABEL = "wire transports: bytes on the wire"
BYTES_GROUP = "bytes"
#: A push fan-out with fewer samples than this per round is measured once, in the last round.
MIN_ROUND_SAMPLES = 5

Unit = tuple[str, str, Placement]


class SkipGroup(RuntimeError):
    """An earlier step of this group failed (its server did not start)."""


@dataclass
class Step:
    label: str
    fn: Callable[[], None]
    group: str
    always: bool = False  # runs even after a failure in its group (stopping the server)
    critical: bool = False  # its failure skips the rest of the group (starting the server)
    tag: tuple[int, int] | None = None  # (round, position in the round) of its latency rows
    phase: str = ""  # bench/run_phases.py; read from the label when not given

    def __post_init__(self) -> None:
        if not self.phase:
            self.phase = ph.phase_of_label(self.label)


def steps(run: BenchRun) -> list[Step]:
    """Every step in run order: the rounds (the last one also measures the load steps, once),
    the byte figures in full, the scenes, then the payload sizes."""
    out: list[Step] = []
    for round_ in range(run.plan.rounds):
        out += round_steps(run, round_)
    if any(not run.in_process(t) for t in run.chats):
        out.append(Step(BYTES_LABEL, run.sizes_all, BYTES_GROUP, phase=ph.BYTES))
    # issue 10's scenes, and issue 13's TLS rows: each module starts its own servers
    from bench import durable_scene, flame, loadgen_scene, population, tls_rows

    for scene in (durable_scene, loadgen_scene, population, flame, tls_rows):
        out += scene.steps(run)
    out.append(Step("payload sizes", run.payload_sizes, "payload_sizes", phase=ph.PAYLOADS))
    return out


# -- rounds ------------------------------------------------------------------------------------
def units(run: BenchRun, round_: int) -> list[Unit]:
    """What a round visits: (kind, name, placement); kind ``ref`` (``name`` a reference
    row), ``chat`` (``name`` = transport/store) or ``same`` (the same-vCPU rows). The
    SQLite rows come in every round, or only in the last where the plan says so."""
    last = round_ == run.plan.rounds - 1
    out: list[Unit] = [("ref", ref, run.main) for ref in run.refs]
    stores = ("memory", "sqlite") if run.plan.sqlite_every_round or last else ("memory",)
    for transport in run.chats:
        for store in stores:
            out.append(("chat", f"{transport}/{store}", run.main))
    if run.same != run.main and run.plan.same_vcpu:
        for transport in run.chats:
            if registry.entry(transport).wire:
                out.append(("same", transport, run.same))
        out += [("same", ref, run.same) for ref in run.refs]
    return out


def round_order(run: BenchRun, round_: int) -> list[Unit]:
    """This round's units, shuffled with a seed of its own (the plan's seed and the round)."""
    order = units(run, round_)
    random.Random(run.plan.seed * 1000 + round_).shuffle(order)
    return order


def round_steps(run: BenchRun, round_: int) -> list[Step]:
    """One round: a fresh client process, then every unit in the round's shuffled order."""
    order = round_order(run, round_)
    run.record_order(round_, [f"{kind}:{name}" for kind, name, _ in order])
    out = [
        Step(
            f"round {round_ + 1}: fresh client process",
            run.fresh_workers,
            f"round{round_}",
            always=True,
            phase=ph.WORKERS,
        )
    ]
    if run.plan.servers_together:
        out.append(
            Step(
                f"round {round_ + 1}: start servers",
                functools.partial(_start_round, run, round_, order),
                f"round{round_}",
                always=True,
                phase=ph.SERVERS,
            )
        )
    last = round_ == run.plan.rounds - 1
    for position, (kind, name, placement) in enumerate(order):
        if kind == "ref":
            unit = _ref_round_steps(run, name, placement, round_, last)
        elif kind == "same":
            unit = _same_vcpu_steps(run, name, f"same/{name}#{round_}")
        else:
            unit = _chat_round_steps(run, name, round_, last)
        for step in unit:
            step.label = f"r{round_ + 1} {step.label}"
            step.tag = (round_, position)
        out += unit
    return out


def _start_round(run: BenchRun, round_: int, order: list[Unit]) -> None:
    """Start every server of a round at once, unpinned, each then pinned to its unit's
    server vCPU (``Plan.servers_together``); each unit's start step adopts its own."""
    servers: dict[str, tuple[ServerProcess | RefServer, int | None]] = {}
    for kind, name, placement in order:
        group = f"same/{name}#{round_}" if kind == "same" else f"{name}#{round_}"
        if name in run.refs:
            servers[group] = (RefServer(name), placement.server_cpu)
        elif not run.in_process(name.split("/")[0]):
            servers[group] = (run.chat_server(group, None), placement.server_cpu)
    run.start_together(servers)


def _server_steps(
    group: str, label: str, start: Callable[[], None], stop: Callable[[], None]
) -> tuple[Step, Step]:
    """The start (critical) and stop (always) steps around a unit's measurements."""
    return (
        Step(f"{label}: start server", start, group, critical=True, phase=ph.SERVERS),
        Step(f"{label}: stop server", stop, group, always=True, phase=ph.SERVERS),
    )


def _chat_round_steps(run: BenchRun, name: str, round_: int, last: bool) -> list[Step]:
    """One transport and store in one round: latency of every op, the lean client (custom)
    or the independent client (bench/refs/independent.py's transports), push delivery, a
    check of the byte figures; in the last round also what is measured once."""
    transport, store = name.split("/")
    group = f"{name}#{round_}"
    plan = run.plan
    wire = not run.in_process(transport)
    in_rounds = plan.rounds if store == "memory" or plan.sqlite_every_round else 1
    share = 1.0 if store == "memory" else plan.sqlite_share
    counts = plan.ops_counts(share, rounds=in_rounds)
    out = [Step(f"{name}: latency", lambda: run.ops(group, counts), group, phase=ph.LATENCY)]
    if transport == LEAN_TRANSPORT and store == "memory" and plan.lean:
        out.append(
            Step(
                f"{name}: lean reference client",
                lambda: run.lean(group),
                group,
                phase=ph.LATENCY,
            )
        )
    if transport in INDEPENDENT_TRANSPORTS and store == "memory" and plan.independent:
        out.append(
            Step(
                f"{name}: independent client",
                lambda: run.lean(group, "independent"),
                group,
                phase=ph.LATENCY,
            )
        )
    if store == "memory":
        fanouts = plan.deliver
    elif plan.sqlite_extras:  # the first fan-out only
        fanouts = {
            f: max(1, round(n * share)) for f, n in itertools.islice(plan.deliver.items(), 1)
        }
    else:
        fanouts = {}
    for fanout, n in fanouts.items():
        # A fan-out with too few samples to split over the rounds is measured once.
        once = n < MIN_ROUND_SAMPLES * in_rounds
        if once and not last:
            continue
        each = n if once else -(-n // in_rounds)
        out.append(
            Step(
                f"{name}: deliver x{fanout}",
                functools.partial(run.deliver, group, fanout, each),
                group,
                phase=ph.DELIVER,
            )
        )
    if wire and store == "memory" and round_ < plan.byte_checks and not last:
        out.append(
            Step(
                f"{name}: bytes check",
                functools.partial(run.sizes, group, round_),
                group,
                phase=ph.BYTE_CHECKS,
            )
        )
    if last:
        out += _chat_once_steps(run, transport, store, group)
    if wire:
        start, stop = _server_steps(
            group, name, lambda: run.start_chat(group), lambda: run.stop(group)
        )
        out = [start, *out, stop]
    return out


def _chat_once_steps(run: BenchRun, transport: str, store: str, group: str) -> list[Step]:
    """What is measured once per transport and store (in the last round, on that round's
    server): the load steps."""
    name = f"{transport}/{store}"
    plan = run.plan
    wire = not run.in_process(transport)
    out: list[Step] = []
    if store == "memory" or plan.sqlite_extras:
        out.append(
            Step(f"{name}: load closed", lambda: run.load(group, "closed"), group, phase=ph.CLOSED)
        )
    if wire:
        fractions = plan.open_fractions if store == "memory" else plan.sqlite_open_fractions
        out += _open_steps(run, name, group, fractions)
    return out


def _open_steps(run: BenchRun, name: str, group: str, fractions: tuple[float, ...]) -> list[Step]:
    """The open-loop steps, lowest rate first (a step past saturation ends the climb:
    BenchRun.load skips the steps above it)."""
    return [
        Step(
            f"{name}: load {frac:.0%}",
            functools.partial(run.load, group, "open", frac),
            group,
            phase=ph.OPEN,
        )
        for frac in sorted(fractions)
    ]


def _ref_round_steps(
    run: BenchRun, ref: str, placement: Placement, round_: int, last: bool
) -> list[Step]:
    """A reference row in one round: its echo; in the last round also its load steps."""
    group = f"{ref}#{round_}"
    out = [
        Step(
            f"{ref}: latency",
            lambda: run.echo(group, placement, True),
            group,
            phase=ph.LATENCY,
        )
    ]
    if last:
        out.append(
            Step(f"{ref}: load closed", lambda: run.load(group, "closed"), group, phase=ph.CLOSED)
        )
        out += _open_steps(run, ref, group, run.plan.ref_open_fractions)
    start, stop = _server_steps(
        group, ref, lambda: run.start_ref(group, ref, placement), lambda: run.stop(group)
    )
    return [start, *out, stop]


def _same_vcpu_steps(run: BenchRun, name: str, group: str) -> list[Step]:
    """The 32 B round trip of a wire transport or a reference with client and server on
    one vCPU."""
    same = run.same
    if name in run.refs:
        start, stop = _server_steps(
            group, group, lambda: run.start_ref(group, name, same), lambda: run.stop(group)
        )
        measure = Step(
            f"{group}: latency", lambda: run.echo(group, same, False), group, phase=ph.SAME_VCPU
        )
        return [start, measure, stop]
    counts = {"send": run.plan.per_round(run.plan.same_vcpu)}
    start, stop = _server_steps(
        group, group, lambda: run.start_chat(group, same), lambda: run.stop(group)
    )
    measure = Step(
        f"{group}: send latency",
        lambda: run.ops(group, counts, same),
        group,
        phase=ph.SAME_VCPU,
    )
    return [start, measure, stop]


__all__ = [
    "BYTES_GROUP",
    "BYTES_LABEL",
    "MIN_ROUND_SAMPLES",
    "SkipGroup",
    "Step",
    "round_order",
    "round_steps",
    "steps",
    "units",
]
