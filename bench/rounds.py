"""Rounds: how the per-round rows of a run become its headline rows, and the intervals of
figures read against each other. Pure: no measuring, no I/O.

The bench measures every latency figure in ``plan.rounds`` rounds. Each round runs every
transport and reference row once, in a shuffled order (seeded; ``meta.rounds`` records it),
each in a fresh server process and with a fresh client process for the round, so that what a
process happened to get (its placement in the caches, its allocator's history, a neighbour's
burst of work) varies between rounds instead of biasing one transport. A latency row then
carries:

* ``p50_us`` ... ``p999_us``, the CPU figures: the **median over rounds** of the round's figure;
* ``ci``: ``{figure: [low, high]}``, the 95 % interval of that median (bench.stats
  ``median_interval``; ``ci_coverage`` its real coverage with this many rounds);
* ``spread``: ``{figure: stdev / mean over rounds}`` (≥ 10 %: unstable, bench compare warns);
* ``modes``: the modes of the pooled latency histogram, when there are two or more;
* ``min_us``, ``mean_us``, ``max_us``, ``spectrum``, ``hist``, ``n``: from every round's
  samples pooled (HdrHistograms add up);
* ``rounds``: one small dict per round (``round``, ``position`` in that round's order, ``n``,
  the percentiles and the CPU figures): what ``bench compare`` tests.

Byte figures are deterministic; every round after the first measures a few of them again and
:func:`check_sizes` records whether they agree (``rounds_agree``) and, where not, each round's
value.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any

from bench.noise import disturbed
from bench.stats import (
    decode,
    median,
    median_interval,
    modes,
    new_histogram,
    paired_interval,
    spread,
    summarize,
)

Row = dict[str, Any]

#: The fields that name a latency row (one row per distinct tuple, over all rounds).
IDENTITY = ("transport", "op", "store", "placement", "body_bytes", "fanout", "client")
#: Figures of a round kept in its ``rounds`` entry, and whose median over rounds is the
#: headline.
ROUND_FIGURES = (
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "mean_us",
    "server_cpu_us_per_op",
    "client_cpu_us_per_op",
    "server_user_us_per_op",
    "server_system_us_per_op",
    "client_user_us_per_op",
    "client_system_us_per_op",
    "ops_per_server_cpu_s",
    "server_cpu_check",
    "server_cpu_util",
    "client_cpu_util",
    "other_vcpus",
    "steal_vcpus",
)
#: Figures that get an interval and a spread (the others ride along).
INTERVAL_FIGURES = (
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "server_cpu_us_per_op",
    "client_cpu_us_per_op",
)
#: The byte figures a round checks again.
BYTE_FIGURES = ("c2s_bytes", "s2c_bytes")
SIZE_IDENTITY = ("transport", "op", "phase", "body_bytes", "recipients", "text")


def _key(row: Row, fields: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row.get(f) for f in fields)


def merge_latency(rows: Iterable[Row]) -> list[Row]:
    """Per-round latency rows (each with ``round``) -> one headline row per identity, in the
    order the identities first appear."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(_key(row, IDENTITY), []).append(row)
    return [merge_rounds(group) for group in groups.values()]


def merge_rounds(group: Sequence[Row]) -> Row:
    """The rows of one identity, one per round, as one headline row (module docstring)."""
    group = sorted(group, key=lambda r: r.get("round", 0))
    first = group[0]
    out: Row = {k: first.get(k) for k in IDENTITY}
    pooled = new_histogram()
    for r in group:
        if r.get("hist"):
            pooled.add(decode(r["hist"]))
    summary = summarize(pooled) if pooled.get_total_count() else {}
    out["n"] = sum(int(r.get("n") or 0) for r in group)
    for key in ("min_us", "mean_us", "max_us", "spectrum", "hist"):
        out[key] = summary.get(key, first.get(key))
    for key in ROUND_FIGURES:
        out[key] = _round(median(r.get(key) for r in group))
    if out["mean_us"] is None:
        out["mean_us"] = _round(median(r.get("mean_us") for r in group))
    out["attempts"] = sum(int(r.get("attempts") or 1) for r in group)
    out["disturbed_rounds"] = sum(1 for r in group if disturbed(r))
    ci: dict[str, list[float]] = {}
    coverage = None
    spreads: dict[str, float] = {}
    for key in INTERVAL_FIGURES:
        values = [r.get(key) for r in group]
        interval = median_interval(values)
        if interval is not None:
            ci[key] = [interval[0], interval[1]]
            coverage = interval[2]
        s = spread(values)
        if s is not None:
            spreads[key] = round(s, 4)
    out["ci"] = ci or None
    out["ci_coverage"] = coverage
    out["spread"] = spreads or None
    found = modes(pooled) if pooled.get_total_count() else []
    out["modes"] = found if len(found) > 1 else None
    out["rounds"] = [
        {
            "round": r.get("round", 0),
            "position": r.get("position"),
            "n": r.get("n"),
            **{key: r.get(key) for key in ROUND_FIGURES if r.get(key) is not None},
        }
        for r in group
    ]
    # The lean step's paired blocks (bench/latency.py run_lean): every round's, tagged.
    pairs = [{**p, "round": r.get("round", 0)} for r in group for p in r.get("pairs") or ()]
    if pairs:
        out["pairs"] = pairs
    # Anything else the rows carry (a future field) rides along from the first round.
    for key, value in first.items():
        if key not in out and key not in ("round", "position"):
            out[key] = value
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# -- series and paired intervals ---------------------------------------------------------------
def series(row: Row | None, figure: str) -> dict[int, float]:
    """{round: value} of one figure of a row; a row without rounds (one round, or a
    results.json from before rounds) is round 0 with its headline value."""
    if row is None:
        return {}
    rounds = row.get("rounds")
    if not rounds:
        value = row.get(figure)
        return {} if value is None else {0: float(value)}
    return {int(r["round"]): float(r[figure]) for r in rounds if r.get(figure) is not None}


def paired(
    a: Row | None, b: Row | None, figure_a: str, figure_b: str | None = None
) -> tuple[list[float], list[float]]:
    """The values of two rows' figures in the rounds both measured, in round order."""
    sa, sb = series(a, figure_a), series(b, figure_b or figure_a)
    common = sorted(set(sa) & set(sb))
    return [sa[r] for r in common], [sb[r] for r in common]


def ratio_interval(
    a: Row | None, b: Row | None, figure_a: str, figure_b: str | None = None
) -> list[float] | None:
    """95 % interval of median(a) ÷ median(b) over the rounds both measured (paired
    bootstrap), or None with fewer than two such rounds."""
    xs, ys = paired(a, b, figure_a, figure_b)
    if len(xs) < 2 or any(y == 0 for y in ys):
        return None
    interval = paired_interval(xs, ys, operator.truediv)
    return None if interval is None else [round(interval[0], 4), round(interval[1], 4)]


def difference_interval(a: Row | None, b: Row | None, figure: str) -> list[float] | None:
    """95 % interval of median(a) - median(b) over paired rounds, or None."""
    xs, ys = paired(a, b, figure)
    if len(xs) < 2:
        return None
    interval = paired_interval(xs, ys, operator.sub)
    return None if interval is None else [round(interval[0], 2), round(interval[1], 2)]


def interval_of(row: Row | None, figure: str) -> list[float] | None:
    """A row's own 95 % interval of one figure, if it has one."""
    if row is None:
        return None
    ci = row.get("ci") or {}
    value = ci.get(figure)
    return None if value is None else [float(value[0]), float(value[1])]


# -- bytes ----------------------------------------------------------------------------------
def check_sizes(sizes: list[Row], checks: dict[int, list[Row]]) -> None:
    """Mark each deterministic size row (phases first and steady) with the rounds that measured
    it again under the same ids (``holds_for``): ``rounds_checked`` (measurements, the full
    one included), ``rounds_agree`` and, only where some round differs, ``rounds``
    (``[{round, c2s_bytes, s2c_bytes}]``)."""
    index = {
        round_: {_key(r, SIZE_IDENTITY): r for r in rows if r.get("phase") in ("first", "steady")}
        for round_, rows in checks.items()
    }
    for row in sizes:
        if row.get("phase") not in ("first", "steady"):
            continue
        seen = [{"round": 0, **{k: row.get(k) for k in BYTE_FIGURES}}]
        for round_, rows in sorted(index.items()):
            other = rows.get(_key(row, SIZE_IDENTITY))
            # Comparable only where the ids on the wire have as many digits (``holds_for``:
            # a fresh server's message ids are smaller, and a varint or a JSON number of an
            # id is shorter): else the sizes differ by design, not by chance.
            if (
                other is not None
                and (other.get("samples") or 0) > 0
                and other.get("holds_for") == row.get("holds_for")
            ):
                seen.append({"round": round_, **{k: other.get(k) for k in BYTE_FIGURES}})
        if len(seen) < 2 or (row.get("samples") or 0) == 0:
            continue  # not re-measured, or no undisturbed call: not an exact figure
        row["rounds_checked"] = len(seen)
        agree = all(s[k] == seen[0][k] for s in seen for k in BYTE_FIGURES)
        row["rounds_agree"] = agree
        if not agree:
            row["rounds"] = seen


__all__ = [
    "IDENTITY",
    "INTERVAL_FIGURES",
    "ROUND_FIGURES",
    "check_sizes",
    "difference_interval",
    "interval_of",
    "merge_latency",
    "merge_rounds",
    "paired",
    "ratio_interval",
    "series",
]
