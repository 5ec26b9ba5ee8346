"""REPORT.md from a results dict. Pure: no I/O, no measuring.

The header, the targets table and the short sections are here; the latency, load and byte
sections are bench/report_latency.py, report_load.py and report_sizes.py, each scene's its own
module's, and "Where the bench's time went" bench/run_phases.py. Every figure in the report
comes from the run's own results.json, so a report can be re-rendered from an old results
file (``render(json.load(...), images)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench import durable_scene, flame, loadgen_scene, population, run_phases, tls_report
from bench.config import (
    DEFAULT_P50_LIMIT,
    FLOOR,
    NOISY_VCPUS,
    P50_LIMITS,
    P50_LIMITS_SOURCE,
)
from bench.ladder import ladder_section
from bench.markdown import TIMES, _fmt, table, with_ci
from bench.report_latency import deliver_section, latency_section, placement_section
from bench.report_load import limited_by, load_section, per_core_cells
from bench.report_sizes import payload_section, sizes_section
from bench.targets import SIZE_KINDS, Row, evaluate_targets, references

#: Average vCPUs of other processes' work above which (or of the hypervisor's steal from
#: which) the report warns that the run was noisy.
BUSY_MACHINE = 0.1


# -- sections ----------------------------------------------------------------------------------
def _header(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    versions = meta.get("versions", {})
    place = meta.get("placement", {})
    plan = meta.get("plan", {})
    lines = [
        f"# wirechat bench — {meta.get('started_at', '?')} ({meta.get('mode', '?')})",
        "",
        f"Command: `{meta.get('command', '?')}` — took {_fmt(meta.get('duration_s'))} s.",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {meta.get('cpu_model')}, {meta.get('cpu_count')} vCPUs, "
        f"{meta.get('platform')} |",
        f"| Python | {meta.get('python')} |",
        "| libraries | " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + " |",
        f"| code | git {str(meta.get('git_commit'))[:12]}"
        + (" (uncommitted changes)" if meta.get("git_dirty") else "")
        + " |",
        f"| placement | server on vCPU {place.get('server_cpu')}, clients on vCPU "
        f"{place.get('client_cpu')}: **{place.get('main')}** for every row unless marked; "
        f"same-vCPU rows on vCPU {place.get('same_vcpu_cpu')} |",
        f"| load generator | {place.get('generator')} |",
        f"| plan | {_plan_in_words(plan)} |",
        f"| rounds | {_rounds_in_words(results)} |",
        f"| load average | start {meta.get('loadavg_start')}, end {meta.get('loadavg_end')} |",
        f"| other work on the machine | {_background(meta)} |",
        "",
    ]
    lines += [
        "How to read it:",
        "- Each server runs as its own process, one at a time, serving only the transport under "
        "test; clients run in another process. Servers are started with `--hash-cost low`, so "
        "signup and login measure the protocol and the store, not argon2.",
        "- `memory` rows use the in-memory store (`--db :memory:`: dicts, nothing persisted; "
        "protocol cost); `sqlite` rows a SQLite file "
        "(WAL, synchronous=NORMAL). Echo references have no store (`none`).",
        f"- Latency: one request in flight, {plan.get('warmup', '?')} warm-up calls first in "
        "every round, percentiles from HdrHistogram (3 significant digits), each the median of "
        "the rounds' figures; `[a, b]` is its 95 % interval (distribution-free, over rounds), "
        "and a ratio's interval is computed on the ratio over paired rounds (a bootstrap). "
        "`send` goes to an offline "
        "recipient (stored, not pushed), so it is a plain request/response like the echo rows, "
        "with the same 32-byte payload.",
        "- Ratios: each transport against its reference row, a bare echo of its family named by "
        f"its registry entry ({_refs_in_words(results)}), and against {FLOOR} (blocking "
        "sockets, the cheapest Python round trip). The latency table's ratios are of rows "
        "measured in steps of their own; the targets' (issue 10) are read, where the run has "
        "them, from blocks of the reference's own client against its own server paired with "
        "ChatClient's blocks in the transport's independent step (both servers on one vCPU, "
        "the same moment), which a drift of the machine between steps cannot move. Beside "
        "them, the same bare client against the transport's contract served with no chat "
        "behind it (bench/refs/null_chat.py for gRPC: protobuf, the session metadata, a "
        "deadline; bench/refs/null_frames.py for custom and protobuf-tcp: the varint frames, "
        "the handshake, each body read and written in the protocol's encoding) gives the "
        "contract's own floor: the part of the gap to the echo that no server can remove.",
        "- CPU: every latency row carries the CPU time per call of the server process and of "
        "the client process (the bench's worker), so a client that is itself the bottleneck "
        "shows. The *lean* row is an independent client (bench/refs/lean_custom.py: a "
        "blocking socket around the custom codec) against the same server in the same run; "
        "the *independent* rows are clients written from every transport's contract "
        "(bench/refs/independent.py: frames by hand, or stock libraries), likewise.",
        "- Interference: every timing row records `other vCPUs`, the work other processes did "
        "on the machine while it was measured, and `steal vCPUs`, the time the hypervisor gave "
        "other guests meanwhile (/proc/stat's steal; — in rows from before it was recorded). "
        f"Above {NOISY_VCPUS} other vCPUs, or from {NOISY_VCPUS} stolen (⚠), the measurement "
        "competed for these 2 vCPUs; a step so disturbed (by other processes or by steal) "
        f"was measured again (up to {plan.get('retries', '?')} more times within "
        f"{plan.get('retry_budget_s', '?')} s for the whole run) and the least disturbed "
        "attempt kept. A ⚠ that remains means the "
        "machine never went quiet: distrust that row.",
        "",
    ]
    return "\n".join(lines)


def _rounds_in_words(results: dict[str, Any]) -> str:
    """How many rounds, what an interval means with that many, and the shuffled order."""
    info = results.get("meta", {}).get("rounds")
    if not info:
        return "one round (a results file from before rounds): no intervals"
    count = info.get("count", 1)
    coverage = next(
        (r["ci_coverage"] for r in results.get("latency", []) if r.get("ci_coverage")), None
    )
    text = (
        f"{count} rounds of latency, each in fresh server and client processes, transports and "
        f"reference rows in a shuffled order (seed {info.get('seed')}, each round's order in "
        "results.json `meta.rounds`); every timed figure is the median over rounds"
    )
    if count < 2:
        return text + "; **one round: no intervals**, every target judged on its value alone"
    text += " with a 95 % interval in brackets"
    if coverage is not None and coverage < 0.95:
        text += (
            f" (with {count} rounds the interval is the range of the rounds, whose real "
            f"coverage is {coverage:.1%}"
            + ("; **a quick run: read the intervals as rough**" if count < 5 else "")
            + ")"
        )
    if not (results.get("meta", {}).get("plan") or {}).get("sqlite_every_round", True):
        text += "; the SQLite rows in the last round only (one round: no interval)"
    checks = info.get("byte_checks", 0)
    text += (
        f"; bytes measured in full once and re-checked in {checks} round"
        f"{'s' if checks != 1 else ''}"
        if checks
        else "; bytes measured once"
    )
    return text


def _plan_in_words(plan: dict[str, Any]) -> str:
    """The counts every transport got, so a reader of a quick run knows it was one."""
    if not plan:
        return "—"
    sqlite = "latency" + (
        ", push delivery and a closed-loop step" if plan.get("sqlite_extras") else " only"
    )
    return (
        f"{plan.get('mode')}: per transport {plan.get('send')} sends, "
        f"{plan.get('accounts')} signup/login cycles, {plan.get('list_accounts')} "
        f"list_accounts, {plan.get('ack')} acks, {plan.get('delete_account')} deletions, "
        f"{plan.get('history')} of each history operation; "
        f"{plan.get('echo')} echoes per reference row; {plan.get('lean')} sends by the lean "
        f"client; {plan.get('independent', 0)} by each independent client; "
        f"SQLite rows: {plan.get('sqlite_share', 0):.0%} of the counts, {sqlite}; "
        f"open-loop steps at {', '.join(f'{f:.0%}' for f in plan.get('open_fractions', ()))} "
        "of the closed-loop rate"
    )


def _refs_in_words(results: dict[str, Any]) -> str:
    pairs = [f"{t} ÷ {ref}" for t, ref in references(results).items()]
    return ", ".join(pairs) or "none in this run"


def _background(meta: dict[str, Any]) -> str:
    bg = meta.get("background") or {}
    other, steal = bg.get("other_vcpus"), bg.get("steal_vcpus")
    if other is None:
        return "not measured"
    text = (
        f"{other:.2f} vCPUs busy with processes the bench did not start (average over the "
        f"run; {meta.get('retry_spent_s', 0)} s spent measuring disturbed steps again)"
    )
    if steal:
        text += f", {steal:.2f} vCPUs stolen by the hypervisor"
    if other > BUSY_MACHINE or (steal or 0.0) >= BUSY_MACHINE:
        text += " — **the machine was busy: treat absolute numbers with suspicion**"
    return text


def _targets_section(results: dict[str, Any]) -> str:
    targets = results.get("targets") or evaluate_targets(results)
    rows = [
        (
            t["name"],
            with_ci(
                "—" if t["value"] is None else f"{t['value']:.2f}",
                t.get("ci"),
                lambda v: f"{v:.2f}",
            ),
            _limit(t),
            t.get("source") or "—",
            f"**{t['status']}**",
            t["detail"],
        )
        for t in targets
    ]
    return (
        "## Targets\n\n"
        "Each ratio with its 95 % interval over paired rounds: **PASS** only if the whole "
        "interval meets the limit, **MISS** only if none of it does, otherwise **not "
        "settled** (this run cannot tell; more rounds or a quieter machine can). *set by*: "
        f"the issue that states the limit ({P50_LIMITS_SOURCE}: every transport's send p50 "
        f"within {DEFAULT_P50_LIMIT}x of its own reference row, "
        + ", ".join(f"against {ref} within {limit}x" for ref, limit in P50_LIMITS.items())
        + ").\n\n"
        + table(["target", "measured [95 % interval]", "limit", "set by", "status", "from"], rows)
    )


def _limit(target: Row) -> str:
    better, limit = target["better"], target["limit"]
    if better == "within":
        return f"1 ± {limit}"
    return f"{'≤' if better == 'lower' else '≥'} {limit}"


def _trend_section(results: dict[str, Any], images: Sequence[str]) -> str:
    """The committed reference runs over time (bench/trend.py)."""
    if "trend.png" not in images:
        return ""
    return (
        "## Trend\n\nEvery committed reference run (`reports/reference/history.json`, one "
        "entry added by each `make bench-reference`): the send p50 of each transport (echo "
        "for the reference rows) with its 95 % interval, and its steady send bytes. Read "
        "across runs with care: a run on a busier machine is slower for reasons that are not "
        "the code.\n\n![trend of the reference runs](trend.png)\n"
    )


def _errors_section(results: dict[str, Any]) -> str:
    errors = results.get("errors", [])
    if not errors:
        return ""
    lines = ["## Errors\n", "These steps failed; their rows are missing above.\n"]
    lines += [f"- **{e['step']}**: `{e['error'].splitlines()[0]}`" for e in errors]
    return "\n".join(lines) + "\n"


def _transports_section(results: dict[str, Any]) -> str:
    """Which transports this run measured, as the registry describes them."""
    measured = {row.get("transport") for row in results.get("latency", [])}
    measured |= {row.get("transport") for row in results.get("sizes", [])}
    entries = [e for e in results.get("meta", {}).get("registry", []) if e["name"] in measured]
    if not entries:
        return ""
    rows = [
        [
            f"`{e['name']}`",
            e["label"],
            e.get("summary", ""),
            f"`{e['reference']}`" if e.get("reference") else "",
            f"[{e['contract']}]({e['contract']})" if e.get("contract") else "",
        ]
        for e in entries
    ]
    return (
        "## Transports measured\n\n"
        "Every transport comes from `transports/registry.py`; each is read against its bare "
        "reference row.\n\n"
        + table(["name", "label", "what it is", "reference row", "contract"], rows)
        + "\n"
    )


def render(results: dict[str, Any], images: Sequence[str] = ()) -> str:
    """The whole REPORT.md; ``images`` are the plot file names that exist beside it."""
    sections: list[Callable[[], str]] = [
        lambda: _header(results),
        lambda: _transports_section(results),
        lambda: _targets_section(results),
        lambda: ladder_section(results, images),
        lambda: latency_section(results, images),
        lambda: deliver_section(results),
        lambda: placement_section(results),
        lambda: load_section(results, images),
        lambda: durable_scene.section(results),
        lambda: loadgen_scene.section(results, images),  # issue 10's scenes: their own modules
        lambda: population.section(results, images),
        lambda: flame.section(results, images),
        lambda: tls_report.section(results, images),  # issue 13: TLS beside the plain rows
        lambda: sizes_section(results, images),
        lambda: payload_section(results),
        lambda: _trend_section(results, images),
        lambda: run_phases.section(results),  # issue 10 item 5: the run's own time budget
        lambda: _errors_section(results),
    ]
    body = "\n".join(s for s in (section() for section in sections) if s)
    return (
        body + "\nFiles: `results.json` (schema in bench/SCHEMA.md) and the PNG plots beside it.\n"
    )


__all__ = [
    "SIZE_KINDS",
    "TIMES",
    "evaluate_targets",
    "limited_by",
    "per_core_cells",
    "render",
    "table",
]
