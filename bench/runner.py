"""The whole bench run: start each server, hand measurement jobs to worker processes, collect
rows, then write results.json, the plots and REPORT.md under ``<out>/<run-id>/``.

The order of the steps is bench/run_steps.py's (rounds of latency, in a shuffled order, the
last round also measuring load once; then the bytes on the wire; then the scenes;
bench/rounds.py says why).
The per-round latency rows are merged into one headline row per figure (median over rounds,
its interval, each round kept in ``rounds``) before results.json is written. Every step's wall
time and the machine's busy CPU time meanwhile are recorded (``meta.step_s``,
``meta.step_cpu_s``) and summed by phase (``meta.phases``, bench/run_phases.py).

Process layout (recorded in ``meta.placement``): servers are pinned to the first usable vCPU,
the worker (the client side and load generator) and this orchestrating process to the second.
One server runs at a time, serving only the transport being measured, so nothing else on the
server's vCPU competes with it. The same-vCPU rows pin server and worker to one vCPU. Two
exceptions (bench/run_servers.py): with ``Plan.servers_together`` (the quick plan) a round's
servers start at once at its start and idle beside the measured one until their unit; and
the bytes on the wire, where nothing is timed, measure every wire transport at once, on
servers and workers of their own, unpinned (BenchRun.sizes_all).

A step that fails is recorded in ``errors`` and the run goes on; a failed server start skips
the rest of its group. Every server and worker is stopped by the process handle that started
it, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import meta, rounds, run_phases, run_servers, run_steps
from bench.config import (
    BODY_BYTES,
    SEED,
    Plan,
    body,
    chat_transports,
    ref_transports,
)
from bench.noise import RetryBudget, disturbed, least_disturbed
from bench.procs import Placement, RefServer, Worker, available_cpus, choose_placement
from bench.refs import CONTRACT_FLOORS
from bench.run_steps import BYTES_GROUP, SkipGroup, Step
from transports import registry
from wirechat.launch import ServerProcess

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: An open-loop step that served less than this share of its offered rate, or overloaded,
#: is past saturation: the steps above it in the same climb are not run (they would only
#: measure a queue growing for longer; ``meta.skipped_steps`` lists them).
PAST_SATURATION = 0.9


class StepSkipped(Exception):
    """The plan's step is not worth running (say, an open-loop step above one already past
    saturation): recorded in ``meta.skipped_steps``, not an error."""


def past_saturation(row: dict[str, Any]) -> bool:
    """An open-loop step that could not be served: it overloaded, timed out, or achieved
    less than PAST_SATURATION of its offered rate."""
    offered = row.get("offered_per_s") or 0.0
    achieved = row.get("achieved_per_s") or 0.0
    return bool(
        row.get("overloaded") or row.get("timeouts") or achieved < PAST_SATURATION * offered
    )


def registry_meta() -> list[dict[str, Any]]:
    """What the report needs of the registry, so a results.json renders on its own."""
    return [
        {
            "name": e.name,
            "label": e.label,
            "wire": e.wire,
            "reference": e.reference,
            "isolates": e.isolates,
            "ladder": e.name in registry.LADDER,
            "summary": e.summary,
            "contract": e.contract,
        }
        for e in registry.BY_NAME.values()
    ]


class BenchRun:
    def __init__(
        self,
        plan: Plan,
        transports: Sequence[str],
        out_dir: Path,
        *,
        command: str,
        progress: bool = True,
    ) -> None:
        self.plan = plan
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.main, self.same = choose_placement()
        self.cpus = available_cpus()  # before execute() pins this process to the client vCPU
        self.body = body(SEED, BODY_BYTES)
        self.results: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "meta": meta.collect(plan.mode, command),
            "sizes": [],
            "payload_sizes": [],
            "latency": [],
            "load": [],
            "targets": [],
            "ladder": [],
            "errors": [],
        }
        self.transports = list(transports)
        self.refs = [t for t in ref_transports() if t in self.transports]
        self.chats = [t for t in chat_transports() if t in self.transports]
        self.results["meta"].update(
            transports=self.transports,
            registry=registry_meta(),
            skipped={},  # (schema 1: every transport asked for is measured or its step errs)
            plan=plan.as_dict(),
            placement=self._placement_meta(),
            hash_cost="low",
        )
        self._workers: dict[Placement, Worker] = {}
        self._servers: dict[str, ServerProcess | RefServer] = {}
        # servers started ahead by start_together, until their unit adopts them
        self._ready: dict[str, ServerProcess | RefServer | BaseException] = {}
        self._capacity: dict[tuple[str, str], float] = {}
        # (transport, store) -> the fraction of the first open-loop step past saturation
        self._past_saturation: dict[tuple[str, str], float] = {}
        self._skipped: list[dict[str, Any]] = []
        self._seq = itertools.count(1)
        self._retry_budget = RetryBudget(plan.retry_budget_s)
        self._tmp = Path(tempfile.mkdtemp(prefix="wirechat-bench-"))
        self._tag: tuple[int, int] | None = None
        self._round_rows: list[dict[str, Any]] = []
        self._size_checks: dict[int, list[dict[str, Any]]] = {}
        self._orders: list[dict[str, Any]] = []

    # -- plan --------------------------------------------------------------------------------
    def _placement_meta(self) -> dict[str, Any]:
        return {
            "server_cpu": self.main.server_cpu,
            "client_cpu": self.main.client_cpu,
            "main": self.main.label,
            "same_vcpu_cpu": self.same.server_cpu,
            "generator": (
                "the load generator and every client run in a separate worker process "
                f"(asyncio on uvloop) pinned to vCPU {self.main.client_cpu}; the server "
                f"under test alone on vCPU {self.main.server_cpu}"
            ),
        }

    def steps(self) -> list[Step]:
        """Every step in run order (bench/run_steps.py)."""
        return run_steps.steps(self)

    def units(self, round_: int) -> list[run_steps.Unit]:
        """What a round visits (bench/run_steps.py)."""
        return run_steps.units(self, round_)

    def round_order(self, round_: int) -> list[run_steps.Unit]:
        """This round's units in their shuffled order (bench/run_steps.py)."""
        return run_steps.round_order(self, round_)

    def record_order(self, round_: int, order: list[str]) -> None:
        """Keep a round's order for results.json ``meta.rounds``."""
        self._orders.append({"round": round_, "order": order})

    def fresh_workers(self) -> None:
        """Each round in a fresh client process: stop the workers (they start on demand)."""
        for worker in self._workers.values():
            worker.stop()
        self._workers.clear()

    # -- steps -------------------------------------------------------------------------------
    @staticmethod
    def _split(group: str) -> tuple[str, str]:
        """group -> (transport, store); a round's suffix (``#2``) is not part of it."""
        parts = group.split("#")[0].split("/")
        if parts[0] == "same":
            return parts[1], "memory" if parts[1] in registry.BY_NAME else "none"
        return parts[0], parts[1] if len(parts) > 1 else "none"

    def chat_server(self, group: str, cpu: int | None) -> ServerProcess:
        """The (unstarted) server of a transport/store group, pinned to ``cpu``."""
        transport, store = self._split(group)
        db = ":memory:" if store == "memory" else self._db_path(group)
        return ServerProcess([transport], db, cpu=cpu)

    def start_chat(self, group: str, placement: Placement | None = None) -> None:
        if not self._adopt(group):
            cpu = (placement or self.main).server_cpu
            self._servers[group] = self.chat_server(group, cpu).start()

    def start_ref(self, group: str, ref: str, placement: Placement) -> None:
        if not self._adopt(group):
            server = RefServer(ref, cpu=placement.server_cpu)
            server.start()
            self._servers[group] = server

    def start_together(
        self, servers: dict[str, tuple[ServerProcess | RefServer, int | None]]
    ) -> None:
        """Start a round's servers (group -> (unstarted unpinned server, its vCPU)) and its
        worker at once (bench/run_servers.py); each unit's start step then adopts its own."""
        self._ready.update(
            run_servers.start_together(servers, self.cpus, also=lambda: self._worker(self.main))
        )

    def _adopt(self, group: str) -> bool:
        """Take over the server start_together started for ``group`` (False: there is none;
        its start's exception if it failed)."""
        ready = self._ready.pop(group, None)
        if isinstance(ready, BaseException):
            raise ready
        if ready is not None:
            self._servers[group] = ready
        return ready is not None

    def _db_path(self, group: str) -> str:
        """A SQLite file of this group's own (each round starts from an empty store)."""
        return str(self._tmp / (group.replace("/", "_").replace("#", "_r") + ".db"))

    def stop(self, group: str) -> None:
        server = self._servers.pop(group, None)
        if server is not None:
            server.stop()

    def _target(self, group: str) -> dict[str, Any]:
        transport, store = self._split(group)
        if self.in_process(transport):  # served in the worker itself
            db = ":memory:" if store == "memory" else self._db_path(group)
            return {"kind": "chat", "transport": transport, "db": db}
        server = self._servers.get(group)
        if server is None:
            raise SkipGroup(f"{group}: no server running")
        if isinstance(server, RefServer):
            assert server.address is not None
            return {
                "kind": "echo",
                "ref": transport,
                "address": server.address,
                "server_pid": server.pid,
            }
        return {
            "kind": "chat",
            "transport": transport,
            "address": server.addresses[transport],
            "server_pid": server.pid,
        }

    @staticmethod
    def in_process(transport: str) -> bool:
        """A transport without a wire (loopback): its clients call the core in the worker."""
        entry = registry.BY_NAME.get(transport)
        return entry is not None and not entry.wire

    def _placement_key(self, transport: str, placement: Placement) -> str:
        return "in-process" if self.in_process(transport) else placement.key

    def _worker(self, placement: Placement) -> Worker:
        worker = self._workers.get(placement)
        if worker is None:
            worker = self._workers[placement] = Worker(cpu=placement.client_cpu).start()
        return worker

    def _job(
        self, placement: Placement, job: dict[str, Any], timeout: float, *, timed: bool = True
    ) -> list[dict[str, Any]]:
        """Run a job; a timed job disturbed by other processes is measured again (bench.noise)."""
        job.setdefault("body", self.body)
        worker = self._worker(placement)

        def attempt() -> list[dict[str, Any]]:
            job["prefix"] = f"b{next(self._seq)}"  # fresh accounts on every attempt
            return worker.run(dict(job), timeout)

        if not timed:
            return attempt()
        return least_disturbed(attempt, retries=self.plan.retries, budget=self._retry_budget)

    def ops(self, group: str, counts: dict[str, int], placement: Placement | None = None) -> None:
        placement = placement or self.main
        transport, store = self._split(group)
        job = {
            "kind": "ops",
            "target": self._target(group),
            "counts": counts,
            "warmup": self.plan.warmup,
        }
        for row in self._job(placement, job, timeout=900):
            self._latency_row(row, transport, store, self._placement_key(transport, placement))

    def deliver(self, group: str, fanout: int, n: int) -> None:
        transport, store = self._split(group)
        job = {
            "kind": "deliver",
            "target": self._target(group),
            "fanout": fanout,
            "n": n,
            "warmup": min(self.plan.warmup, max(2, n // 5)),
        }
        for row in self._job(self.main, job, timeout=600):
            self._latency_row(row, transport, store, self._placement_key(transport, self.main))

    def lean(self, group: str, kind: str = "lean") -> None:
        """The lean blocking client's send against this group's server (bench/refs), in
        blocks paired with ChatClient's in the same worker (bench/latency.py run_lean); with
        ``kind`` "independent", the stock-library client's (run_independent)."""
        transport, store = self._split(group)
        total = self.plan.independent if kind == "independent" else self.plan.lean
        job = {
            "kind": kind,
            "target": self._target(group),
            "n": self.plan.per_round(total),
            "warmup": self.plan.warmup,
        }
        with self._reference_beside(transport if kind == "independent" else None) as beside:
            job.update(beside)
            rows = self._job(self.main, job, timeout=600)
        for row in rows:
            self._latency_row(row, transport, store, self.main.key)

    @contextlib.contextmanager
    def _reference_beside(self, transport: str | None) -> Iterator[dict[str, Any]]:
        """The transport's reference server (its registry entry's ``reference``) and its
        contract's floor where it has one (bench.refs.CONTRACT_FLOORS), started on the
        transport server's vCPU for the length of one step, so that their clients' blocks
        pair with ChatClient's (bench/latency.py run_independent: issue 10's floor ratio,
        paired). Yields the job's ``echo`` and ``contract`` entries (none without them)."""
        entry = registry.BY_NAME.get(transport or "")
        wanted = {
            "echo": None if entry is None else entry.reference,
            "contract": CONTRACT_FLOORS.get(transport or ""),
        }
        servers: dict[str, RefServer] = {}
        try:
            for role, ref in wanted.items():
                if ref is not None:
                    servers[role] = RefServer(ref, cpu=self.main.server_cpu)
                    servers[role].start()
            yield {
                role: {"ref": wanted[role], "address": server.address, "server_pid": server.pid}
                for role, server in servers.items()
            }
        finally:
            for server in servers.values():
                server.stop()

    def echo(self, group: str, placement: Placement, full: bool) -> None:
        transport, _ = self._split(group)
        n = self.plan.per_round(self.plan.echo if full else self.plan.same_vcpu)
        job = {"kind": "echo", "target": self._target(group), "n": n, "warmup": self.plan.warmup}
        for row in self._job(placement, job, timeout=600):
            self._latency_row(row, transport, "none", placement.key)

    def _latency_row(self, row: dict[str, Any], transport: str, store: str, placement: str) -> None:
        """A latency row of the current round (merged over rounds at the end)."""
        round_, position = self._tag or (0, None)
        self._round_rows.append(
            {
                "round": round_,
                "position": position,
                "transport": transport,
                "op": row.pop("op"),
                "store": store,
                "placement": placement,
                "body_bytes": row.pop("body_bytes", None),
                "fanout": row.pop("fanout", None),
                "client": row.pop("client", None),
                **row,
            }
        )

    def _load_job(self, group: str, mode: str) -> dict[str, Any]:
        """A load step's job, before its mode's own figures."""
        return {
            "kind": "load",
            "target": self._target(group),
            "mode": mode,
            "connections": self.plan.connections,
            "warmup": self.plan.load_warmup,
            "frames": True,  # custom-framed transports: the lean frame generator (bench/load.py)
        }

    def closed_block(self, group: str, duration_s: float) -> dict[str, Any]:
        """One closed loop of the lean generator alone against ``group``'s server (no product
        client beside it, not recorded as a load row): a block of a paired scene
        (bench/durable_scene.py)."""
        job = self._load_job(group, "closed")
        job.update(depth=self.plan.depth, duration_s=duration_s, lean_only=True)
        [row] = self._job(self.main, job, timeout=duration_s * 3 + 120)
        return row

    def load(self, group: str, mode: str, fraction: float | None = None) -> None:
        transport, store = self._split(group)
        plan = self.plan
        job = self._load_job(group, mode)
        if mode == "closed":
            job.update(depth=plan.depth, duration_s=plan.closed_s)
            timeout = plan.closed_s * 3 + 120
        else:
            past = self._past_saturation.get((transport, store))
            if past is not None:
                raise StepSkipped(f"past saturation: the {past:.0%} step already was")
            capacity = self._capacity.get((transport, store))
            if not capacity:
                raise SkipGroup(f"{group}: no closed-loop rate to step the offered load from")
            job.update(
                rate=round(capacity * (fraction or 1.0), 1),
                duration_s=plan.open_s,
                max_inflight=plan.max_inflight,
                drain_s=plan.drain_s,
            )
            timeout = plan.open_s * 3 + plan.drain_s + 120
        for row in self._job(self.main, job, timeout=timeout):
            row = {
                "transport": transport,
                "op": "echo" if transport in self.refs else "send",
                "store": store,
                "placement": self._placement_key(transport, self.main),
                "fraction": fraction,
                **row,
            }
            self.results["load"].append(row)
            if mode == "closed" and row["completed"]:
                self._capacity[(transport, store)] = row["achieved_per_s"]
            if mode == "open" and past_saturation(row) and not disturbed(row):
                # (a step other processes disturbed may have missed its rate because of them:
                # the climb goes on, and the next step tells)
                self._past_saturation[(transport, store)] = fraction or 1.0

    def sizes(self, group: str, check_round: int | None = None) -> None:
        """A round's check of a few byte figures, on the round's server of ``group``."""
        transport, _ = self._split(group)
        server = self._servers.get(group)
        if not isinstance(server, ServerProcess):
            raise SkipGroup(f"{group}: no server running")
        worker = self._worker(self.main)
        check = check_round is not None
        rows = run_servers.sizes_job(worker, transport, server, self.plan.mode, check=check)
        if check_round is None:
            self.results["sizes"] += rows
        else:
            self._size_checks.setdefault(check_round, []).extend(rows)

    def sizes_all(self) -> None:
        """Bytes on the wire in full, every wire transport at once, each on a server and a
        worker of its own (bench/run_servers.py). Most of this measurement's wall time is
        each relay's quiet wait after an operation (bench/wire_relay.py ``settle``): at once,
        the transports' waits overlap instead of adding up. A transport that fails is
        recorded as its own error; the others' rows are kept."""
        wire = [t for t in self.chats if not self.in_process(t)]
        if not wire:
            return
        with ThreadPoolExecutor(len(wire), thread_name_prefix="bench-sizes") as pool:
            futures = {
                t: pool.submit(
                    run_servers.unpinned(
                        functools.partial(run_servers.sizes_alone, t, self.plan.mode), self.cpus
                    )
                )
                for t in wire
            }
        for transport, future in futures.items():  # registry order, whatever finished first
            exc = future.exception()
            if exc is None:
                self.results["sizes"] += future.result()
            else:
                label = f"{transport}/memory: bytes on the wire"
                self._error(Step(label, lambda: None, BYTES_GROUP), exc)

    def payload_sizes(self) -> None:
        job = {"kind": "payload_sizes", "plan": self.plan.mode}
        self.results["payload_sizes"] += self._job(self.main, job, timeout=600, timed=False)

    # -- run ---------------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        """Run every step; returns the results dict (meta finished, targets not yet)."""
        from tqdm import tqdm  # type: ignore[import-untyped]

        steps = self.steps()
        started = time.monotonic()
        cpu_start = meta.cpu_snapshot()
        timings: dict[str, float] = {}
        cpu: dict[str, float] = {}  # the machine's busy CPU seconds during each step
        ran: list[tuple[str, float, float]] = []  # (phase, seconds, CPU seconds) of each step
        skipped: dict[str, int] = {}  # phase -> steps left out
        failed: set[str] = set()
        own_affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        if own_affinity is not None and self.main.client_cpu is not None:
            os.sched_setaffinity(0, {self.main.client_cpu})
        tty = sys.stderr.isatty()  # in a CI log, a line every 10 s rather than every step
        bar = tqdm(
            steps,
            file=sys.stderr,
            unit="step",
            disable=not self.progress,
            dynamic_ncols=True,
            mininterval=0.1 if tty else 10.0,
        )
        try:
            for step in bar:
                bar.set_description(step.label, refresh=tty)
                if step.group in failed and not step.always:
                    continue
                self._tag = step.tag
                before = meta.cpu_snapshot()
                try:
                    step.fn()
                except StepSkipped as why:
                    skipped[step.phase] = skipped.get(step.phase, 0) + 1
                    self._skipped.append({"step": step.label, "why": str(why)})
                    continue
                except Exception as exc:
                    self._error(step, exc)
                    if step.critical or isinstance(exc, SkipGroup):
                        failed.add(step.group)
                finally:
                    after = meta.cpu_snapshot()
                    timings[step.label] = round(after["wall"] - before["wall"], 2)
                    busy = after.get("machine", 0.0) - before.get("machine", 0.0)
                    cpu[step.label] = round(busy, 2)
                ran.append((step.phase, timings[step.label], cpu[step.label]))
        finally:
            bar.close()
            for group in list(self._servers):
                with contextlib.suppress(Exception):
                    self.stop(group)
            for ready in self._ready.values():  # started ahead, never adopted
                if not isinstance(ready, BaseException):
                    ready.stop()
            self._ready.clear()
            for worker in self._workers.values():
                worker.stop()
            shutil.rmtree(self._tmp, ignore_errors=True)
            if own_affinity is not None:
                os.sched_setaffinity(0, own_affinity)
        self.results["latency"] = rounds.merge_latency(self._round_rows)
        rounds.check_sizes(self.results["sizes"], self._size_checks)
        self.results["meta"].update(
            rounds={
                "count": self.plan.rounds,
                "byte_checks": self.plan.byte_checks,
                "seed": self.plan.seed,
                "orders": self._orders,
            },
            finished_at=meta.utc_now(),
            duration_s=round(time.monotonic() - started, 1),
            loadavg_end=meta.loadavg(),
            background=meta.background_cpu(cpu_start, meta.cpu_snapshot()),
            retry_spent_s=round(self._retry_budget.spent, 1),
            step_s=timings,
            step_cpu_s=cpu,
            phases=run_phases.tally(ran, skipped),
            skipped_steps=self._skipped,
        )
        return self.results

    def _error(self, step: Step, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        log.warning("%s failed: %s", step.label, message.splitlines()[0])
        self.results["errors"].append({"step": step.label, "group": step.group, "error": message})


def write_outputs(results: dict[str, Any], run_dir: Path) -> list[Path]:
    """results.json, the plots and REPORT.md in ``run_dir``; returns the files written."""
    from bench import ladder, plots, report, targets

    started = time.monotonic()
    run_dir.mkdir(parents=True, exist_ok=True)
    results["targets"] = targets.evaluate_targets(results)
    results["ladder"] = ladder.ladder(results)
    images = plots.draw_all(results, run_dir)
    from bench.flame import draw_flames  # one SVG flame graph per profiled transport

    images += draw_flames(results, run_dir)
    # the plots' time too, so the phase table accounts for the whole run (near enough)
    results.setdefault("meta", {})["outputs_s"] = round(time.monotonic() - started, 1)
    results["meta"]["budget"] = run_phases.budget_use(results["meta"])  # issue 10 item 5
    (run_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (run_dir / "REPORT.md").write_text(report.render(results, [p.name for p in images]))
    return [run_dir / "results.json", *images, run_dir / "REPORT.md"]


def point_latest(run_dir: Path) -> Path:
    """Make ``<out>/latest`` a relative symlink to this run (a copy where links do not work)."""
    latest = run_dir.parent / "latest"
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.is_dir():
        shutil.rmtree(latest)
    try:
        latest.symlink_to(run_dir.name, target_is_directory=True)
    except OSError:
        shutil.copytree(run_dir, latest)
    return latest


def run_id(mode: str) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + ("" if mode == "full" else f"-{mode}")


def run_bench(
    plan: Plan,
    transports: Sequence[str],
    out_dir: Path,
    *,
    command: str,
    progress: bool = True,
) -> Path:
    """Measure, write ``<out_dir>/<run-id>/`` and point ``<out_dir>/latest`` at it."""
    run_dir = Path(out_dir) / run_id(plan.mode)
    results = BenchRun(
        plan, transports, Path(out_dir), command=command, progress=progress
    ).execute()
    write_outputs(results, run_dir)
    point_latest(run_dir)
    return run_dir


__all__ = [
    "SCHEMA_VERSION",
    "BenchRun",
    "SkipGroup",
    "Step",
    "StepSkipped",
    "disturbed",
    "past_saturation",
    "point_latest",
    "run_bench",
    "write_outputs",
]
