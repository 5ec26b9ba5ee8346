"""``wirechat bench compare OLD NEW``: the change of every figure between two runs.

Each results.json is flattened to ``{figure name: number}``; a figure's name is its section,
the fields that identify its row, and the metric (``latency custom send memory cross p50_us``).
Open-loop load steps are matched by their fraction of the closed-loop rate, since the offered
rates themselves follow each run's own saturation rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stats import change_pct

LATENCY_METRICS = (
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "server_cpu_us_per_op",
    "client_cpu_us_per_op",
)
LOAD_METRICS = (
    "offered_per_s",
    "achieved_per_s",
    "p50_us",
    "p99_us",
    "p999_us",
    "server_cpu_us_per_op",
    "client_cpu_us_per_op",
)
SIZE_IDENTITY = ("transport", "op", "phase", "body_bytes", "recipients", "text")
PAYLOAD_IDENTITY = ("op", "direction", "body_bytes", "recipients", "text", "note")


def load_results(path: str | Path) -> dict[str, Any]:
    """A results.json, given as the file or as the run directory that holds it."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    return json.loads(p.read_text())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def figures(results: dict[str, Any]) -> dict[str, float]:
    """Every number worth comparing, by a stable name."""
    out: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        if _is_number(value):
            out[name] = float(value)

    for r in results.get("latency", []):
        ident = f"latency {r['transport']} {r['op']} {r['store']} {r['placement']}"
        if r.get("fanout") is not None:
            ident += f" fanout={r['fanout']}"
        if r.get("client"):
            ident += f" client={r['client']}"
        for metric in LATENCY_METRICS:
            put(f"{ident} {metric}", r.get(metric))
    for r in results.get("load", []):
        step = "closed" if r["mode"] == "closed" else f"open@{(r.get('fraction') or 0):.0%}"
        ident = f"load {r['transport']} {r['op']} {r['store']} {step}"
        for metric in LOAD_METRICS:
            put(f"{ident} {metric}", r.get(metric))
    for r in results.get("sizes", []):
        ident = "sizes " + " ".join(f"{k}={r.get(k)}" for k in SIZE_IDENTITY if k in r)
        for key, value in r.items():
            if key not in SIZE_IDENTITY:
                put(f"{ident} {key}", value)
    for r in results.get("payload_sizes", []):
        ident = "payload_sizes " + " ".join(
            f"{k}={r[k]}" for k in PAYLOAD_IDENTITY if r.get(k) is not None
        )
        for key, value in r.items():
            if key not in PAYLOAD_IDENTITY:
                put(f"{ident} {key}", value)
    for rung in results.get("ladder", []):
        for key, value in rung.items():
            if key.endswith(("_bytes", "_us", "_per_s")) and not key.startswith("delta_"):
                put(f"ladder {rung['transport']} {key}", value)
    for t in results.get("targets", []):
        put(f"target {t['name']}", t.get("value"))
    return out


@dataclass(frozen=True)
class Change:
    figure: str
    old: float | None
    new: float | None

    @property
    def pct(self) -> float | None:
        return change_pct(self.old, self.new)


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """One Change per figure present in either run, in a stable order."""
    a, b = figures(old), figures(new)
    names = list(a) + [name for name in b if name not in a]
    return [Change(name, a.get(name), b.get(name)) for name in names]


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000 or (value == int(value) and abs(value) >= 100):
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"


def format_changes(changes: list[Change], *, old_label: str = "old", new_label: str = "new") -> str:
    """A plain-text table: old, new, change in percent, then the figure's name."""
    lines = [f"{old_label:>12}  {new_label:>12}  {'change':>8}  figure"]
    for c in changes:
        if c.old is None:
            change = "new"
        elif c.new is None:
            change = "gone"
        elif c.pct is None:
            change = "—"
        else:
            change = f"{c.pct:+.1f}%"
        lines.append(f"{_num(c.old):>12}  {_num(c.new):>12}  {change:>8}  {c.figure}")
    return "\n".join(lines) + "\n"


__all__ = ["Change", "compare", "figures", "format_changes", "load_results"]
