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
    (r"^tls: (start|stop) servers$", SERVERS),
    (r"^tls: ", TLS),
    (r": (start|stop)( server)?$", SERVERS),
    (r"^(r\d+ )?same/", SAME_VCPU),
    (r": bytes check$", BYTE_CHECKS),
    (r": bytes on the wire$", BYTES),
    (r": deliver x\d+$", DELIVER),
    (r": (latency|lean reference client)$", LATENCY),
    (r": load closed$", CLOSED),
    (r": load \d+%$", OPEN),
    (r"^generator ceiling", GENERATOR),
    (r": population x\d+$", POPULATION),
    (r": profile \(py-spy\)$", PROFILES),
    (r"^payload sizes$", PAYLOADS),
)


def phase_of_label(label: str) -> str:
    """The phase a step's label belongs to (runs from before ``meta.phases``)."""
    return next((phase for pattern, phase in _BY_LABEL if re.search(pattern, label)), OTHER)


def tally(
    steps: Iterable[tuple[str, float]], skipped: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """(phase, seconds) of every step that ran -> one row per phase in PHASES order:
    ``{"phase", "s", "steps", "skipped"}`` (``skipped``: steps the plan had but the run left
    out, e.g. open-loop steps past a transport's saturation)."""
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    for phase, s in steps:
        seconds[phase] = seconds.get(phase, 0.0) + s
        counts[phase] = counts.get(phase, 0) + 1
    skipped = dict(skipped or {})
    names = [p for p in PHASES if p in seconds or p in skipped]
    names += [p for p in seconds if p not in names]
    return [
        {
            "phase": p,
            "s": round(seconds.get(p, 0.0), 1),
            "steps": counts.get(p, 0),
            "skipped": skipped.get(p, 0),
        }
        for p in names
    ]


def phases_of(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run's phase rows: ``meta.phases``, or derived from ``meta.step_s`` (older runs)."""
    if meta.get("phases"):
        return list(meta["phases"])
    step_s = meta.get("step_s") or {}
    return tally((phase_of_label(label), s) for label, s in step_s.items())


def _budget(meta: Mapping[str, Any]) -> str:
    budget = BUDGET_S.get(str(meta.get("mode")))
    return "" if budget is None else f"; the budget of the whole run is {budget:,.0f} s"


def _share(s: float, total: float) -> str:
    return f"{s / total:.0%}" if total else "—"


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
            f"  ({r['steps']} steps{skipped})"
        )
    return "\n".join(lines) + "\n"


def section(results: Mapping[str, Any]) -> str:
    """REPORT.md's "Where the bench's time went": each phase's wall time and share."""
    meta = results.get("meta", {})
    rows = phases_of(meta)
    if not rows:
        return ""
    total = sum(r["s"] for r in rows)
    cells = [
        [r["phase"], r["steps"], r.get("skipped") or "", f"{r['s']:,.1f}", _share(r["s"], total)]
        for r in rows
    ]
    cells.append(["**all steps**", sum(r["steps"] for r in rows), "", f"{total:,.1f}", "100%"])
    retried = meta.get("retry_spent_s") or 0
    notes = [
        f"The wall time of every step of this run ({meta.get('mode', '?')} plan), by phase; "
        f"the steps took {meta.get('duration_s', '?')} s in all{_budget(meta)} (issue 10). "
        "Server start-ups and stops "
        "are their own row (the last round's servers also serve the load steps and the byte "
        "figures, so those start nothing of their own). *skipped*: steps "
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
    if not meta.get("phases"):
        notes.append("(A run from before phases were recorded: phases read from step labels.)")
    return (
        "## Where the bench's time went\n\n"
        + " ".join(notes)
        + "\n\n"
        + table(["phase", "steps", "skipped", "seconds", "share"], cells)
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
    "phase_of_label",
    "phases_of",
    "section",
    "tally",
    "text_table",
]
