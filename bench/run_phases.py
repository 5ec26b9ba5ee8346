"""Where a bench run's time goes: every step belongs to one *phase*, and the run records each
phase's wall time (``meta.phases`` in results.json), prints it, and REPORT.md shows it.

The budget (issue 10): ``make bench`` within 15 minutes and ``make bench-quick`` within 2 on
a 2-vCPU machine. A phase table says which part of the plan to trim when a run is over, and
what a new scene costs. Pure: no I/O, no measuring.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from bench.markdown import table

#: Issue 10's budget for a whole run of each plan, seconds (``make bench``, ``make bench-quick``).
BUDGET_S = {"full": 15 * 60.0, "quick": 120.0}

#: The phases, in the order the tables list them. A step names its phase (bench/run_steps.py).
WORKERS = "fresh client processes"
SERVERS = "server start and stop"
LATENCY = "latency, one in flight"
DELIVER = "push delivery"
SAME_VCPU = "same-vCPU rows"
BYTE_CHECKS = "byte re-checks in rounds"
BYTES = "bytes on the wire"
CLOSED = "load: closed loop"
OPEN = "load: open-loop steps"
DURABLE = "durable share, paired"
GENERATOR = "generator ceiling"
POPULATION = "population"
PROFILES = "flame profiles"
TLS = "TLS rows"
PAYLOADS = "payload sizes"
OTHER = "other"
PHASES = (
    WORKERS,
    SERVERS,
    LATENCY,
    DELIVER,
    SAME_VCPU,
    BYTE_CHECKS,
    BYTES,
    CLOSED,
    OPEN,
    DURABLE,
    GENERATOR,
    POPULATION,
    PROFILES,
    TLS,
    PAYLOADS,
    OTHER,
)

#: A step label's phase, for runs recorded before steps named theirs (``meta.step_s`` only):
#: the first pattern that matches wins.
_BY_LABEL: tuple[tuple[str, str], ...] = (
    (r"fresh client process", WORKERS),
    (r"^round \d+: start servers$", SERVERS),
    (r"^tls: (start|stop) servers$", SERVERS),
    (r"^tls: ", TLS),
    (r": (start|stop)( server)?$", SERVERS),
    (r"^(r\d+ )?same/", SAME_VCPU),
    (r": bytes check$", BYTE_CHECKS),
    (r": bytes on the wire$", BYTES),
    (r": deliver x\d+$", DELIVER),
    (r": (latency|lean reference client|independent client)$", LATENCY),
    (r": load closed$", CLOSED),
    (r": load \d+%$", OPEN),
    (r": durable share", DURABLE),
    (r"^generator ceiling", GENERATOR),
    (r": population x\d+$", POPULATION),
    (r": profile \(py-spy\)$", PROFILES),
    (r"^payload sizes$", PAYLOADS),
)


def phase_of_label(label: str) -> str:
    """The phase a step's label belongs to (runs from before ``meta.phases``)."""
    return next((phase for pattern, phase in _BY_LABEL if re.search(pattern, label)), OTHER)


def tally(
    steps: Iterable[tuple[Any, ...]], skipped: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """(phase, seconds) or (phase, seconds, CPU seconds) of every step that ran -> one row per
    phase in PHASES order: ``{"phase", "s", "steps", "skipped"}``, plus ``"cpu_s"`` when the
    steps carry CPU seconds (the machine's busy time while they ran: bench/runner.py).
    ``skipped``: steps the plan had but the run left out, e.g. open-loop steps past a
    transport's saturation."""
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    counts: dict[str, int] = {}
    for phase, s, *rest in steps:
        seconds[phase] = seconds.get(phase, 0.0) + s
        counts[phase] = counts.get(phase, 0) + 1
        if rest:
            cpu[phase] = cpu.get(phase, 0.0) + rest[0]
    skipped = dict(skipped or {})
    names = [p for p in PHASES if p in seconds or p in skipped]
    names += [p for p in seconds if p not in names]
    rows = []
    for p in names:
        row: dict[str, Any] = {
            "phase": p,
            "s": round(seconds.get(p, 0.0), 1),
            "steps": counts.get(p, 0),
            "skipped": skipped.get(p, 0),
        }
        if cpu:
            row["cpu_s"] = round(cpu.get(p, 0.0), 1)
        rows.append(row)
    return rows


def phases_of(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run's phase rows: ``meta.phases``, or derived from ``meta.step_s`` (older runs)."""
    if meta.get("phases"):
        return list(meta["phases"])
    step_s = meta.get("step_s") or {}
    return tally((phase_of_label(label), s) for label, s in step_s.items())


def _budget(meta: Mapping[str, Any]) -> str:
    budget = BUDGET_S.get(str(meta.get("mode")))
    return "" if budget is None else f"; the budget of the whole run is {budget:,.0f} s"


def budget_use(meta: Mapping[str, Any], total_s: float | None = None) -> dict[str, Any] | None:
    """How a run kept to issue 10's budget for its plan (None: the plan has none).

    ``run_s`` is what ``make bench-quick`` waits for: ``total_s`` when the caller timed the
    whole command, else the steps plus drawing the plots and writing the report (a second or
    so of start-up is then left out). ``over`` is true when it exceeds ``budget_s``."""
    budget = BUDGET_S.get(str(meta.get("mode")))
    steps_s = meta.get("duration_s")
    if budget is None or steps_s is None:
        return None
    outputs_s = meta.get("outputs_s") or 0.0
    run_s = round(total_s if total_s is not None else steps_s + outputs_s, 1)
    return {
        "budget_s": budget,
        "run_s": run_s,
        "steps_s": steps_s,
        "outputs_s": outputs_s,
        "over": run_s > budget,
    }


def budget_verdict(meta: Mapping[str, Any], total_s: float | None = None) -> str:
    """One line saying whether the run kept to its budget, and if not, by how much and how
    busy the machine was (``wirechat bench`` prints it last; REPORT.md has it too)."""
    use = budget_use(meta, total_s)
    if use is None:
        return ""
    mode, budget, run_s = meta.get("mode"), use["budget_s"], use["run_s"]
    besides = "plots, report and start-up" if total_s is not None else "plots and report"
    parts = f"{use['steps_s']:,.0f} s of steps + {run_s - use['steps_s']:,.0f} s of {besides}"
    if not use["over"]:
        return (
            f"Budget: {run_s:,.0f} s of {budget:,.0f} s for a {mode} run ({parts}); "
            f"{budget - run_s:,.0f} s to spare.\n"
        )
    load = meta.get("loadavg_start") or ["?"]
    load_end = meta.get("loadavg_end") or ["?"]
    other = (meta.get("background") or {}).get("other_vcpus")
    busy = "" if other is None else f", other processes used {other:.2f} vCPUs on average"
    return (
        f"OVER BUDGET: this {mode} run took {run_s:,.1f} s, {run_s - budget:,.1f} s more than "
        f"issue 10's {budget:,.0f} s ({parts}); load average {load[0]} at the start and "
        f"{load_end[0]} at the end{busy}. The phases above say where the time went.\n"
    )


def _share(s: float, total: float) -> str:
    return f"{s / total:.0%}" if total else "—"


def _cpu(row: Mapping[str, Any]) -> str:
    """A phase's CPU seconds and how many vCPUs that kept busy on average ('' if unknown)."""
    if row.get("cpu_s") is None:
        return ""
    vcpus = f" = {row['cpu_s'] / row['s']:.1f} vCPUs" if row["s"] else ""
    return f"  CPU {row['cpu_s']:>6,.1f} s{vcpus}"


def text_table(meta: Mapping[str, Any]) -> str:
    """The phases as plain text for the terminal (``wirechat bench`` prints it at the end)."""
    rows = phases_of(meta)
    if not rows:
        return ""
    total = sum(r["s"] for r in rows)
    width = max(len(r["phase"]) for r in rows)
    lines = [f"Where the bench's time went ({total:,.0f} s in steps{_budget(meta)}):"]
    for r in sorted(rows, key=lambda r: -r["s"]):
        skipped = f", {r['skipped']} skipped" if r.get("skipped") else ""
        lines.append(
            f"  {r['phase']:<{width}}  {r['s']:>7,.1f} s  {_share(r['s'], total):>4}"
            f"{_cpu(r)}  ({r['steps']} steps{skipped})"
        )
    if any(r.get("cpu_s") is not None for r in rows):
        lines.append(
            "  (CPU: the whole machine's busy time during the phase, the bench's and any "
            "other work's; on 2 vCPUs, 2.0 vCPUs is all of it)"
        )
    return "\n".join(lines) + "\n"


def section(results: Mapping[str, Any]) -> str:
    """REPORT.md's "Where the bench's time went": each phase's wall time and share."""
    meta = results.get("meta", {})
    rows = phases_of(meta)
    if not rows:
        return ""
    total = sum(r["s"] for r in rows)
    has_cpu = any(r.get("cpu_s") is not None for r in rows)
    cells = [
        [r["phase"], r["steps"], r.get("skipped") or "", f"{r['s']:,.1f}", _share(r["s"], total)]
        + ([f"{r.get('cpu_s') or 0:,.1f}"] if has_cpu else [])
        for r in rows
    ]
    cpu_total = [f"{sum(r.get('cpu_s') or 0 for r in rows):,.1f}"] if has_cpu else []
    cells.append(
        ["**all steps**", sum(r["steps"] for r in rows), "", f"{total:,.1f}", "100%", *cpu_total]
    )
    retried = meta.get("retry_spent_s") or 0
    notes = [
        f"The wall time of every step of this run ({meta.get('mode', '?')} plan), by phase; "
        f"the steps took {meta.get('duration_s', '?')} s in all{_budget(meta)} (issue 10). "
        "Server start-ups and stops "
        "are their own row (the last round's servers also serve the load steps, so those "
        "start nothing of their own; the bytes on the wire start a server per wire transport "
        "inside their one step; with the quick plan a round's servers all start in its "
        '"start servers" step, and each unit\'s own start step only takes its server over). '
        "*skipped*: steps "
        "of the plan the run left out (an open-loop step above a transport's first step past "
        "saturation, where the offered rate could not be served).",
    ]
    if meta.get("outputs_s") is not None:
        notes.append(f"Drawing the plots and writing this report took {meta['outputs_s']} s more.")
    if retried:
        notes.append(
            f"{retried} s of it measured disturbed steps again (a busy machine; counted in the "
            "phases of the steps measured again)."
        )
    if has_cpu:
        notes.append(
            "*CPU s*: the whole machine's busy CPU time while the phase's steps ran (this "
            "bench's processes and any other work; a phase whose CPU is well below its "
            "seconds spent them waiting)."
        )
    if not meta.get("phases"):
        notes.append("(A run from before phases were recorded: phases read from step labels.)")
    verdict = budget_verdict(meta)
    headers = ["phase", "steps", "skipped", "seconds", "share"] + (["CPU s"] if has_cpu else [])
    return (
        "## Where the bench's time went\n\n"
        + " ".join(notes)
        + "\n\n"
        + table(headers, cells)
        + (f"\n{verdict}" if verdict else "")
    )


__all__ = [
    "BUDGET_S",
    "BYTES",
    "BYTE_CHECKS",
    "CLOSED",
    "DELIVER",
    "GENERATOR",
    "LATENCY",
    "OPEN",
    "OTHER",
    "PAYLOADS",
    "PHASES",
    "POPULATION",
    "PROFILES",
    "SAME_VCPU",
    "SERVERS",
    "TLS",
    "WORKERS",
    "budget_use",
    "budget_verdict",
    "phase_of_label",
    "phases_of",
    "section",
    "tally",
    "text_table",
]
