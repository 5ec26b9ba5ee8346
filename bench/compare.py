"""``wirechat bench compare OLD NEW``: every figure of two runs, and whether it really changed.

Each results.json is flattened to figures named by their section, the fields that identify
their row, and the metric (``latency custom send memory cross p50_us``). Open-loop load steps
are matched by their fraction of the closed-loop rate, since the offered rates themselves
follow each run's own saturation rate. Load steps are also matched by the generator that drove
them (``engine=``: a closed-loop step of custom and protobuf-tcp has a row of the product
client and one of the lean frame generator); a row from before ``engine`` was the product
client's, so it is matched with the new run's ``engine=client`` row, and a step that only one
run's generator measured (custom's open loop, driven by the product client before the lean
frame generator) is listed as new or gone, never compared across generators.

How a change is judged (the way Go's benchstat does it):

* a timed figure of a run with rounds (schema 2, bench/rounds.py) is a *sample*: one value
  per round. It is printed as the median with its 95 % interval, and the two samples are
  compared with the Mann-Whitney U test (``scipy.stats.mannwhitneyu``, two-sided; exact for
  small samples, ties included: ``u_test``): no
  assumption about the shape of the noise, and one wild round cannot swing it. Where
  p >= ALPHA the change column says ``~``: no difference this test can see. Note what small
  samples allow: with 3 rounds a side the smallest possible p is 0.10 (so a quick run can
  never show a significant change), with 5 a side 0.008;
* a byte figure of a call is deterministic when the run shows it is (its rounds agreed, or
  every undisturbed call of it gave the same bytes): any difference is real, and it is shown
  without a test (``p`` = ``exact``); one that varied (a gRPC ``first`` call, whose
  flow-control frames depend on timing) is shown as measured once;
* a figure measured once (load steps, a results.json from before rounds: compared as one
  round, and the output says so) has no sample to test: its change is shown with ``p`` = ``—``
  and it never counts as significant.

Warnings (the *note* column), after pyperf: a spread over rounds of 10 % or more (sample
standard deviation over the mean) and a multimodal latency distribution (two or more modes in
the pooled histogram, bench.stats.modes): a median and its test say little about either.

Exit status, for CI: 1 only when some *gate* figure got worse significantly *and* by more
than GATE_CHANGE: p < GATE_P, worse by more than 10 %; for a byte figure, exact in both runs
*and confirmed by their rounds* (``rounds_agree``: the full bench re-measures bytes in two
rounds; a quick run does not, so its bytes are shown but never fail it). The confirmation is
there because a figure can be steady within a run and still differ between runs: grpc-core's
stream WINDOW_UPDATE lands on a grpc-stream send in one run and not in the next (30 vs 56 B).
The gate figures are the ones the project is judged by: each transport's ``send`` (p50, and
server and client CPU per call: the ladder's and the targets table's operation) and the bytes
of every first and steady call. Every other timed figure (the other operations, the tails
p90 .. p99.9) is tested and printed, and called significant or ``~``, but does not gate.

Why so few, and why 10 %: rounds interleave within one run, so the U-test sees the noise
*within* a run; what moves a whole run on a shared machine (a neighbour's disk traffic during
one run, not the other) it cannot see. Two full runs of one commit on this machine
(reports/20261129-034115 and -035716, 1,286 tested figures) called 65 significant at p < 0.05
(about 64 expected by chance: the test's own rate) and, with every operation's p50 and CPU
gating at 5 %, failed the gate on 10 figures (SQLite deliver and delete_account rows up to
+154 %, whole-run drift); on the ``send`` figures alone at 10 % they fail it on none. Runs
hours apart are another matter here: one build measured at 03:57 and again at 06:55 (its
custom send p50 162 then 94 µs, tcp_echo's 53 then 50) fails it on 15 figures. Compare runs
made back to back (``make bench-compare`` right after a run of the old build), or on a
machine of your own. With F
timed gate figures about F x GATE_P of them pass the test by chance (the summary prints that
number; 5 + 5 rounds reach p < 0.01 only at their smallest p, 2/252); the 10 % floor, like
gRPC's own PR gate ignoring changes under 3 %, keeps a real but small shift from failing a
build while a genuine slowdown of the hot path (a sleep of 200 µs per send: every
transport's send p50 and more) fails it on every transport at once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stats import UNSTABLE_SPREAD, change_pct, median_interval, spread

#: Below this p-value a change is called significant (benchstat's default alpha).
ALPHA = 0.05
#: A gate figure fails the comparison only below this p-value ...
GATE_P = 0.01
#: ... and only when it got worse by more than this (percent).
GATE_CHANGE = 10.0
#: The operations whose latency figures gate (see the module docstring).
GATE_OPS = frozenset({"send"})

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
#: Latency figures that gate the exit status (the tails do not).
LATENCY_GATE = frozenset({"p50_us", "server_cpu_us_per_op", "client_cpu_us_per_op"})
#: Byte figures of a call that are deterministic (phases first and steady).
EXACT_SIZE_KEYS = frozenset(
    f"{d}_{k}"
    for d in ("c2s", "s2c")
    for k in ("bytes", "payload", "framing", "headers", "control")
)
SIZE_GATE = frozenset({"c2s_bytes", "s2c_bytes"})
#: Numbers of a size row that count calls or rounds, not bytes.
SIZE_BOOKKEEPING = frozenset({"samples", "disturbed", "rounds_checked", "calls"})
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


@dataclass(frozen=True)
class Figure:
    """One figure of one run: its headline value and, if it has them, its rounds.

    ``kind``: ``timed`` (a sample over rounds), ``exact`` (deterministic: every round agreed)
    or ``single`` (measured once). ``better``: ``lower``, ``higher`` or None (no direction,
    e.g. an offered rate)."""

    value: float
    samples: tuple[float, ...] = ()
    kind: str = "single"
    better: str | None = "lower"
    gate: bool = False
    modes: tuple[float, ...] = ()
    confirmed: bool = False  # exact, and re-measured in rounds that agreed

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.kind != "timed":
            return None
        found = median_interval(self.samples)
        return None if found is None else (found[0], found[1])

    @property
    def spread(self) -> float | None:
        return spread(self.samples) if self.kind == "timed" else None


def _timed(row: dict[str, Any], metric: str, *, gate: bool) -> Figure | None:
    value: Any = row.get(metric)
    if not _is_number(value):
        return None
    values = tuple(float(r[metric]) for r in row.get("rounds") or () if _is_number(r.get(metric)))
    modes = tuple(row.get("modes") or ()) if metric.endswith("_us") and "cpu" not in metric else ()
    if len(values) >= 2:
        return Figure(float(value), values, "timed", "lower", gate, modes)
    return Figure(float(value), (float(value),), "single", "lower", gate)


def deterministic(row: dict[str, Any]) -> bool:
    """Whether a size row's figures are exact: its rounds agreed (``rounds_agree``), or, not
    re-measured, every undisturbed call of it gave the same bytes each way (``*_range``)."""
    if (row.get("samples") or 0) == 0 or row.get("phase") not in ("first", "steady"):
        return False
    if "rounds_agree" in row:
        return bool(row["rounds_agree"])
    ranges = [row.get(f"{d}_range") for d in ("c2s", "s2c")]
    if any(r is None for r in ranges):
        return True  # a row without ranges (an older file): taken at its word
    return (row.get("samples") or 0) >= 2 and all(r[0] == r[1] for r in ranges if r)


def _exact(row: dict[str, Any], key: str, *, gate: bool) -> Figure | None:
    value: Any = row.get(key)
    if not _is_number(value):
        return None
    values = tuple(float(r[key]) for r in row.get("rounds") or () if _is_number(r.get(key)))
    confirmed = bool(row.get("rounds_agree"))
    return Figure(float(value), values or (float(value),), "exact", "lower", gate, (), confirmed)


def load_engine(row: dict[str, Any]) -> str:
    """The generator that drove a load row (bench/load.py's ``engine``); a row without one,
    from a run before the lean generators, was driven by the product client."""
    return str(row.get("engine") or "client")


def samples(results: dict[str, Any]) -> dict[str, Figure]:
    """Every figure worth comparing, by a stable name, with its rounds where it has them."""
    out: dict[str, Figure] = {}

    def put(name: str, figure: Figure | None) -> None:
        if figure is not None:
            out[name] = figure

    for r in results.get("latency", []):
        ident = f"latency {r['transport']} {r['op']} {r['store']} {r['placement']}"
        if r.get("fanout") is not None:
            ident += f" fanout={r['fanout']}"
        if r.get("client"):
            ident += f" client={r['client']}"
        for metric in LATENCY_METRICS:
            gate = r["op"] in GATE_OPS and metric in LATENCY_GATE
            put(f"{ident} {metric}", _timed(r, metric, gate=gate))
    for r in results.get("load", []):
        step = "closed" if r["mode"] == "closed" else f"open@{(r.get('fraction') or 0):.0%}"
        ident = f"load {r['transport']} {r['op']} {r['store']} {step} engine={load_engine(r)}"
        for metric in LOAD_METRICS:
            value = r.get(metric)
            if _is_number(value):
                better = {"offered_per_s": None, "achieved_per_s": "higher"}.get(metric, "lower")
                gate = metric == "achieved_per_s"
                put(
                    f"{ident} {metric}",
                    Figure(float(value), (float(value),), "single", better, gate),
                )
    for r in results.get("sizes", []):
        ident = "sizes " + " ".join(f"{k}={r.get(k)}" for k in SIZE_IDENTITY if k in r)
        exact = deterministic(r)
        for key, value in r.items():
            if key in SIZE_IDENTITY or key in SIZE_BOOKKEEPING or not _is_number(value):
                continue
            if exact and key in EXACT_SIZE_KEYS:
                put(f"{ident} {key}", _exact(r, key, gate=key in SIZE_GATE))
            else:
                put(f"{ident} {key}", Figure(float(value), (float(value),), "single", None))
    for r in results.get("payload_sizes", []):
        ident = "payload_sizes " + " ".join(
            f"{k}={r[k]}" for k in PAYLOAD_IDENTITY if r.get(k) is not None
        )
        for key, value in r.items():
            if key not in PAYLOAD_IDENTITY and _is_number(value):
                put(f"{ident} {key}", Figure(float(value), (float(value),), "exact", "lower"))
    for rung in results.get("ladder", []):
        for key, value in rung.items():
            if (
                key.endswith(("_bytes", "_us", "_per_s"))
                and not key.startswith("delta_")
                and _is_number(value)
            ):
                better = "higher" if key.endswith("_per_s") else "lower"
                put(
                    f"ladder {rung['transport']} {key}",
                    Figure(float(value), (float(value),), "single", better),
                )
    for t in results.get("targets", []):
        value = t.get("value")
        if _is_number(value):
            better = t.get("better") if t.get("better") in ("lower", "higher") else None
            put(f"target {t['name']}", Figure(float(value), (float(value),), "single", better))
    return out


def figures(results: dict[str, Any]) -> dict[str, float]:
    """Every number worth comparing, by a stable name (the headline value of each figure)."""
    return {name: figure.value for name, figure in samples(results).items()}


#: Up to this many ways to split two samples, a U-test with ties is an exact permutation test.
EXACT_SPLITS = 20_000


def u_test(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Mann-Whitney U, two-sided: its p-value, exact for small samples *with ties too*.

    scipy is exact for small samples only without ties; with one tie anywhere (two rounds
    with the same p50: HdrHistogram's buckets make that common) it falls back to the normal
    approximation, which for 5 + 5 rounds that do not overlap at all says p = 0.012 instead of
    2/252 = 0.008, so a build slower in every round slipped under GATE_P. Then every split of
    the pooled rounds is enumerated instead (252 for 5 + 5): exact, ties and all.
    """
    from scipy.stats import PermutationMethod, mannwhitneyu  # type: ignore[import-untyped]

    pooled = a + b
    method: Any = "auto"
    if len(set(pooled)) < len(pooled) and math.comb(len(pooled), len(a)) <= EXACT_SPLITS:
        method = PermutationMethod(n_resamples=EXACT_SPLITS)
    return float(mannwhitneyu(a, b, alternative="two-sided", method=method).pvalue)


@dataclass(frozen=True)
class Change:
    """One figure in both runs (either may be missing) and the verdict on its change."""

    figure: str
    old: float | None
    new: float | None
    old_fig: Figure | None = None
    new_fig: Figure | None = None

    @property
    def pct(self) -> float | None:
        return change_pct(self.old, self.new)

    @property
    def p_value(self) -> float | None:
        """Mann-Whitney U (two-sided) when both runs have a sample of rounds; else None."""
        a, b = self.old_fig, self.new_fig
        if a is None or b is None or a.kind != "timed" or b.kind != "timed":
            return None
        if set(a.samples) == set(b.samples) and len(set(a.samples)) == 1:
            return 1.0
        return u_test(a.samples, b.samples)

    def chance(self, alpha: float = ALPHA) -> float:
        """The chance this figure passes a test at ``alpha`` when nothing changed: about
        ``alpha``, or 0 when so few rounds cannot reach it (3 + 3 rounds: the smallest
        two-sided p of the U-test is 0.1; 5 + 5: 0.008)."""
        a, b = self.old_fig, self.new_fig
        if a is None or b is None or a.kind != "timed" or b.kind != "timed":
            return 0.0
        smallest = 2 / math.comb(len(a.samples) + len(b.samples), len(a.samples))
        return alpha if smallest < alpha else 0.0

    @property
    def exact(self) -> bool:
        """Both runs measured a deterministic figure: any difference is real."""
        a, b = self.old_fig, self.new_fig
        return a is not None and b is not None and a.kind == "exact" and b.kind == "exact"

    @property
    def significant(self) -> bool:
        if self.old is None or self.new is None:
            return False
        if self.exact:
            return self.old != self.new
        p = self.p_value
        return p is not None and p < ALPHA

    @property
    def worse_pct(self) -> float | None:
        """How much worse the new run is, in percent (negative: better); None if the figure
        has no direction."""
        fig = self.new_fig or self.old_fig
        pct = self.pct
        if fig is None or fig.better is None or pct is None:
            return None
        return pct if fig.better == "lower" else -pct

    @property
    def regression(self) -> bool:
        """A gate figure, significantly worse (p < GATE_P, or exact) by more than GATE_CHANGE."""
        fig = self.new_fig or self.old_fig
        if fig is None or not fig.gate or self.worse_pct is None:
            return False
        if self.worse_pct <= GATE_CHANGE:
            return False
        if self.exact:  # only a figure both runs confirmed in rounds: see the module docstring
            return all(f is not None and f.confirmed for f in (self.old_fig, self.new_fig))
        p = self.p_value
        return p is not None and p < GATE_P

    def notes(self) -> list[str]:
        """Warnings: an unstable spread over rounds, a multimodal distribution."""
        out = []
        spreads = [
            (side, f.spread)
            for side, f in (("old", self.old_fig), ("new", self.new_fig))
            if f is not None and f.spread is not None and f.spread >= UNSTABLE_SPREAD
        ]
        if spreads:
            out.append("spread " + "/".join(f"{side} {s:.0%}" for side, s in spreads))
        modal = [
            side
            for side, f in (("old", self.old_fig), ("new", self.new_fig))
            if f is not None and len(f.modes) > 1
        ]
        if modal:
            out.append("multimodal " + "/".join(modal))
        return out


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """One Change per figure present in either run, in a stable order."""
    a, b = samples(old), samples(new)
    names = list(a) + [name for name in b if name not in a]
    return [
        Change(
            name,
            a[name].value if name in a else None,
            b[name].value if name in b else None,
            a.get(name),
            b.get(name),
        )
        for name in names
    ]


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000 or (value == int(value) and abs(value) >= 100):
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"


def _with_ci(value: float | None, figure: Figure | None) -> str:
    text = _num(value)
    ci = None if figure is None else figure.interval
    return text if ci is None else f"{text} [{_num(ci[0])}, {_num(ci[1])}]"


def _change(c: Change) -> str:
    if c.old is None:
        return "new"
    if c.new is None:
        return "gone"
    if c.pct is None:
        return "—"
    if c.exact or c.p_value is None:
        return f"{c.pct:+.1f}%"
    return f"{c.pct:+.1f}%" if c.significant else "~"


def _p(c: Change) -> str:
    if c.exact:
        return "exact"
    p = c.p_value
    return "—" if p is None else f"{p:.3f}"


def _n(c: Change) -> str:
    sizes = [str(len(f.samples)) if f is not None else "0" for f in (c.old_fig, c.new_fig)]
    return "/".join(sizes)


def format_changes(changes: list[Change], *, old_label: str = "old", new_label: str = "new") -> str:
    """A plain-text table: old and new (median [95 % interval]), the change (``~`` where not
    significant), the U-test's p, rounds per side, warnings, then the figure's name."""
    rows = [
        (_with_ci(c.old, c.old_fig), _with_ci(c.new, c.new_fig), _change(c), _p(c), _n(c))
        for c in changes
    ]
    w_old = max([len(old_label), *(len(r[0]) for r in rows)])
    w_new = max([len(new_label), *(len(r[1]) for r in rows)])
    lines = [
        f"{old_label:>{w_old}}  {new_label:>{w_new}}  {'change':>8}  {'p':>6}  {'n':>5}  figure"
    ]
    for c, (o, n, ch, p, k) in zip(changes, rows, strict=True):
        notes = c.notes()
        note = f"  ({'; '.join(notes)})" if notes else ""
        lines.append(f"{o:>{w_old}}  {n:>{w_new}}  {ch:>8}  {p:>6}  {k:>5}  {c.figure}{note}")
    return "\n".join(lines) + "\n"


def machine(results: dict[str, Any]) -> str | None:
    """The CPU a run ran on (meta ``cpu_model`` and ``cpu_count``), None when not recorded."""
    meta = results.get("meta", {})
    model = meta.get("cpu_model")
    if not model:
        return None
    count = meta.get("cpu_count")
    return f"{model}, {count} vCPUs" if count else str(model)


def machine_warning(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """A warning when the two runs ran on different CPUs (both recorded), else None.

    The project's machine is reassigned between sessions, not always of one CPU, and a
    change of CPU moves more than the times: our unary gRPC server's share over the contract's
    floor (bench/refs/null_chat.py) read 1.09-1.13x and +41..55 us of server CPU a call in
    every reference run on an Intel Xeon, 1.04-1.10x and +27 us on an AMD EPYC with the same
    code (helper benchgap, 2026-11-30): paired ratios within one run are no proof against it.
    """
    a, b = machine(old), machine(new)
    if a is None or b is None or a == b:
        return None
    return (
        f"the runs ran on different machines (old: {a}; new: {b}): every change below, "
        "ratios included, is the machine's as much as the code's; compare runs of one machine"
    )


def describe(results: dict[str, Any]) -> str:
    """One line about a run: mode, rounds, commit, when, on what CPU."""
    meta = results.get("meta", {})
    rounds = (meta.get("rounds") or {}).get("count")
    commit = str(meta.get("git_commit") or "?")[:12]
    dirty = "+changes" if meta.get("git_dirty") else ""
    where = f"{meta.get('mode', '?')}, git {commit}{dirty}, {meta.get('started_at', '?')}"
    cpu = machine(results)
    if cpu is not None:
        where += f", {cpu}"
    if not rounds:
        return where + ", no rounds (before schema 2: each figure compared as one round)"
    return where + f", {rounds} round{'s' if rounds != 1 else ''}"


def summary(changes: list[Change]) -> str:
    """What changed significantly, what regressed beyond the gate, and how many significant
    results chance alone would give."""
    tested = [c for c in changes if c.p_value is not None]
    exact = [c for c in changes if c.exact]
    better = [c for c in changes if c.significant and (c.worse_pct or 0) < 0]
    worse = [c for c in changes if c.significant and (c.worse_pct or 0) > 0]
    gates = [c for c in tested if any(f is not None and f.gate for f in (c.old_fig, c.new_fig))]
    regressions = [c for c in changes if c.regression]
    lines = [
        f"{len(changes)} figures; {len(tested)} tested (Mann-Whitney U over rounds), "
        f"{len(exact)} exact (deterministic bytes), the rest measured once (not tested).",
        f"significant (p < {ALPHA}, or an exact difference): {len(better)} better, "
        f"{len(worse)} worse. By chance alone about {sum(c.chance() for c in tested):.0f} of "
        "the tested figures would be, even if nothing changed"
        + (
            " (too few rounds for any to be: with 3 a side the smallest possible p is 0.1)."
            if tested and not any(c.chance() for c in tested)
            else "."
        ),
        f"regressions (a gate figure worse by more than {GATE_CHANGE:g} % with p < {GATE_P}, "
        f"or a byte figure both runs confirmed in rounds): {len(regressions)}"
        + (
            f" (about {sum(c.chance(GATE_P) for c in gates):.1f} expected by chance)"
            if gates
            else ""
        )
        + ("" if not regressions else ":"),
    ]
    lines += [
        f"  {c.figure}: {_num(c.old)} -> {_num(c.new)} ({c.pct:+.1f}%, p {_p(c)})"
        for c in regressions
    ]
    only = sum(1 for c in changes if c.old is None or c.new is None)
    if only:
        lines.append(f"{only} figures are in one run only (new or gone).")
    warned = sum(1 for c in changes if c.notes())
    if warned:
        lines.append(
            f"{warned} figures carry a warning (spread over rounds >= {UNSTABLE_SPREAD:.0%}, or "
            "a multimodal distribution): more rounds or a quieter machine before trusting them."
        )
    return "\n".join(lines) + "\n"


def exit_status(changes: list[Change]) -> int:
    """0, or 1 when some gate figure regressed (see the module docstring)."""
    return 1 if any(c.regression for c in changes) else 0


__all__ = [
    "ALPHA",
    "GATE_CHANGE",
    "GATE_OPS",
    "GATE_P",
    "Change",
    "Figure",
    "compare",
    "describe",
    "deterministic",
    "exit_status",
    "figures",
    "format_changes",
    "load_engine",
    "load_results",
    "machine",
    "machine_warning",
    "samples",
    "summary",
    "u_test",
]
