"""Markdown tables and number formats shared by REPORT.md's sections."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

TIMES = "\N{MULTIPLICATION SIGN}"


def _fmt_x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}{TIMES}"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; numbers right-aligned."""
    rows = [[c if isinstance(c, str) else _fmt(c) for c in row] for row in rows]
    if not rows:
        return "_(no rows in this run)_\n"
    align = ["---:" if all(_numeric(r[i]) for r in rows) else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _numeric(cell: str) -> bool:
    stripped = cell.replace(",", "").replace(TIMES, "").replace("—", "").replace(".", "").strip()
    return stripped.lstrip("-").isdigit() or cell == "—"


def fmt_us(value: float | None) -> str:
    """Microseconds for a table: one decimal below 1000, thousands separators above."""
    if value is None:
        return "—"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def interval(ci: Sequence[float] | None, fmt: Callable[[float], str] | None = None) -> str:
    """A 95 % interval as ``[low, high]``, or "" without one (one round; a deterministic
    figure)."""
    if not ci:
        return ""
    fmt = fmt or fmt_us
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def with_ci(
    text: str, ci: Sequence[float] | None, fmt: Callable[[float], str] | None = None
) -> str:
    """A table cell: the figure, then its interval when it has one."""
    bracket = interval(ci, fmt)
    return f"{text} {bracket}" if bracket and text != "—" else text


def fmt_x_ci(value: float | None, ci: Sequence[float] | None) -> str:
    """A ratio with its interval: ``3.81x [3.52, 4.10]`` (with the times sign)."""
    return with_ci(_fmt_x(value), ci, lambda v: f"{v:.2f}")


def signed(value: float | None, unit: str) -> str:
    """A delta with its sign and unit: ``+1.5 µs``, ``+1,234 B``; ``—`` when missing."""
    if value is None:
        return "—"
    text = f"{value:+,.0f}" if abs(value) >= 100 else f"{value:+.1f}"
    return f"{text} {unit}"


__all__ = ["TIMES", "fmt_rate", "fmt_us", "fmt_x_ci", "interval", "signed", "table", "with_ci"]
