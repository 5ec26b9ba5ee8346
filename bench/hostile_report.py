"""The verdicts and the report of the hostile scene (``bench.hostile``).

``checks(results)`` turns the raw figures into rows of name / target / actual / verdict
(PASS, MISS, or INFO for a figure without a target); ``write_report`` writes ``results.json``
(everything, for tools) and ``REPORT.md`` (the verdicts, then what each attack did and saw).
The targets are issue 14's: canary push p50 and p99 under 50 ms, the real user's correct login
answered within 2 s under 20 guessers, server RSS under 512 MB, 0 crashes, 0 acknowledged
messages lost; plus the defects' own symptoms (connects never accepted, bare gRPC failures).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

CANARY_TARGET_MS = 50.0
LOGIN_TARGET_S = 2.0
RSS_TARGET_MB = 512.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; inf for an empty list."""
    if not values:
        return math.inf
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _ms(value: float) -> str:
    return "never" if math.isinf(value) else f"{value * 1000:.1f} ms"


def canary_latency(results: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    """Push latencies of the canary messages meant to be sent in [start, end) (wall time); a
    message never delivered counts as infinitely late."""
    canary = results.get("canary", {})
    latency = canary.get("latency", {})
    values = [
        latency.get(str(seq), math.inf)
        for seq, wall in canary.get("scheduled", [])
        if start <= wall < end
    ]
    return {
        "messages": len(values),
        "undelivered": sum(1 for v in values if math.isinf(v)),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values, default=math.inf),
    }


def _row(name: str, target: str, actual: str, ok: bool | None) -> dict[str, str]:
    verdict = "INFO" if ok is None else ("PASS" if ok else "MISS")
    return {"name": name, "target": target, "actual": actual, "verdict": verdict}


def checks(results: dict[str, Any]) -> list[dict[str, str]]:
    """The verdict rows (module docstring)."""
    rows = []
    t_go, t_end = results.get("t_go", 0.0), results.get("t_end", 0.0)
    window = canary_latency(results, t_go, t_end)
    base = canary_latency(results, results.get("t_ready", 0.0), t_go)
    for q in ("p50", "p99"):
        rows.append(_row(
            f"canary push {q} under attack", f"< {CANARY_TARGET_MS:.0f} ms",
            f"{_ms(window[q])} ({window['messages']} messages, {window['undelivered']} "
            f"undelivered; quiet baseline {_ms(base[q])})",
            window[q] * 1000 < CANARY_TARGET_MS,
        ))  # fmt: skip
    canary = results.get("canary", {})
    rows.append(_row("canary answered after the attacks", "yes",
                     "yes" if canary.get("answered_after") else "no",
                     bool(canary.get("answered_after"))))  # fmt: skip
    every_login = results.get("relogin", canary).get("logins", [])  # (its own worker now)
    logins = [entry for entry in every_login if t_go <= entry[0] < t_end]
    times = [entry[1] for entry in logins if entry[1] is not None]
    refused = [entry[2] for entry in logins if entry[1] is None]
    worst = max(times, default=math.inf) if not refused else math.inf
    detail = f"worst {worst:.2f} s" if not math.isinf(worst) else "not always answered"
    detail += f" over {len(logins)} logins"
    if refused:
        detail += f"; failed: {', '.join(sorted(set(refused)))} ({len(refused)})"
    if times:
        detail += f"; answered in {', '.join(f'{t:.1f}' for t in times)} s"
    welcomed = sorted(e[3] for e in logins if len(e) > 3 and e[3] is not None)
    if welcomed:  # (where the time went: the connection itself, or the login)
        detail += f"; WELCOME after {welcomed[len(welcomed) // 2]:.1f} s (median)"
    slow_checks = [c for c in results.get("owner_checks", []) if t_go <= c[0] < t_end + 30]
    if slow_checks:  # (the server's side of a slow login: its password check, core.passwords)
        detail += "; the server's slow checks of it (waited for a worker / ran): " + ", ".join(
            f"{w / 1000:.2f}/{r / 1000:.2f} s" for _, w, r in slow_checks
        )
    quiet = [e[1] for e in every_login if e[0] < t_go and e[1] is not None]
    if quiet:
        detail += f"; quiet baseline {min(quiet):.2f} s"
    rows.append(_row("real user's correct login under guessing", f"< {LOGIN_TARGET_S:.0f} s",
                     detail, bool(logins) and worst < LOGIN_TARGET_S))  # fmt: skip
    samples = results.get("samples", [])
    peak_rss = max((max(s[1], s[2]) for s in samples), default=0) / 1024
    last_rss = samples[-1][1] / 1024 if samples else 0.0
    rows.append(_row("server peak RSS", f"< {RSS_TARGET_MB:.0f} MB",
                     f"{peak_rss:.0f} MB (at the end: {last_rss:.0f} MB)",
                     peak_rss < RSS_TARGET_MB))  # fmt: skip
    peak_fds = max((s[3] for s in samples), default=0)
    limit = results.get("fd_limit")
    rows.append(_row("server peak descriptors", f"< its limit ({limit})",
                     f"{peak_fds} (at the end: {samples[-1][3] if samples else 0})",
                     limit is None or peak_fds < limit))  # fmt: skip
    errors = results.get("server_log_errors", [])
    crashed = bool(results.get("crashed"))
    rows.append(_row("server crashes", "0",
                     f"{int(crashed)} (exit code {results.get('exit_code')}, "
                     f"{len(errors)} errors logged)",
                     not crashed and not errors))  # fmt: skip
    verified = results.get("verify")
    if verified is None:
        rows.append(_row("acknowledged messages lost", "0", "not checked (server down)", False))
    else:
        unchecked = len(verified["could_not_check"])
        rows.append(_row(
            "acknowledged messages lost", "0",
            f"{verified['lost_count']} of {verified['acknowledged']} acknowledged deliveries to "
            f"{verified['recipients']} recipients ({verified['pending_after']} pending after; "
            f"{unchecked} recipients could not log in to check)",
            verified["lost_count"] == 0 and unchecked == 0,
        ))  # fmt: skip
    attacks = results.get("attacks", {})
    storm = results.get("storm", attacks).get("connect_storm", {}).get("outcomes", {})
    if storm:
        silent = sum(v for k, v in storm.items() if k.startswith("never accepted"))
        rows.append(_row("connect storm: never accepted", "0",
                         f"{silent} of {sum(storm.values())} ({_counts(storm)})",
                         silent == 0))  # fmt: skip
    grpc = results.get("grpc")
    if grpc:
        bare = sum(v for k, v in grpc["failures"].items() if "CANCELLED" in k or "UNKNOWN" in k)
        rows.append(_row("gRPC sends failed without a reason", "0",
                         f"{bare} of {grpc['sent_ok'] + sum(grpc['failures'].values())} "
                         f"({_counts(grpc['failures']) or 'no failures'})", bare == 0))  # fmt: skip
    gc_info = results.get("gc")
    if gc_info is not None:
        rows.append(_row("server GC pauses >= 10 ms in the window", "-",
                         _gc_detail(gc_info, t_go, t_end), None))  # fmt: skip
    loop_info = results.get("loop")
    if loop_info is not None:
        rows.append(_row("server loop late by >= 20 ms in the window", "-",
                         _lag_detail(loop_info, t_go, t_end), None))  # fmt: skip
    slow = canary_slow_by_slice(results, t_go, t_end)
    if slow:
        rows.append(_row(f"canary pushes over {CANARY_TARGET_MS:.0f} ms, by 10 s of the window",
                         "-", slow, None))  # fmt: skip
    late = _late_canary(results, t_go, t_end)
    if late:
        rows.append(_row("where the canary's slowest 1 % waited", "-", late, None))
    sched = _sched_detail(results, t_go, t_end)
    if sched:
        rows.append(_row("CPU / wait for a CPU in the window (s)", "-", sched, None))
    listen = _listen_detail(results, t_go, t_end)
    if listen:
        rows.append(_row("listen queue in the window", "-", listen, None))
    flood = attacks.get("ack_flood", {})
    if flood.get("rounds"):
        took = ", ".join("cut off" if t is None else f"{t:.2f} s" for t in flood["rounds"])
        rows.append(_row("ACK flood: time for the server to get through a round", "-",
                         f"{took} ({flood['frames_per_round']} ACKs, "
                         f"{flood['bytes_per_round'] / 1e6:.1f} MB each)", None))  # fmt: skip
    if results.get("failed_workers"):
        rows.append(_row("scene workers that failed", "0",
                         ", ".join(sorted(results["failed_workers"])), False))  # fmt: skip
    return rows


def canary_slow_by_slice(
    results: dict[str, Any], start: float, end: float, every: float = 10.0
) -> str:
    """How many of the canary's pushes meant for each ``every`` seconds of [start, end) took
    longer than the target (never delivered counts), and how many the p99 allows in all:
    whether the p99 is a burst (the flood's first seconds) or spread over the window."""
    canary = results.get("canary", {})
    latency = canary.get("latency", {})
    counts: dict[int, list[int]] = {}  # slice -> [slow, all]
    for seq, wall in canary.get("scheduled", []):
        if start <= wall < end:
            took = latency.get(str(seq), math.inf)
            cell = counts.setdefault(int((wall - start) // every), [0, 0])
            cell[0] += took * 1000 > CANARY_TARGET_MS
            cell[1] += 1
    if not counts:
        return ""
    total = sum(cell[1] for cell in counts.values())
    parts = [
        f"{k * every:.0f}-{(k + 1) * every:.0f} s {slow}/{n}"
        for k, (slow, n) in sorted(counts.items())
    ]
    return ", ".join(parts) + f" (the p99 allows {total // 100} of {total})"


def _late_canary(results: dict[str, Any], start: float, end: float) -> str:
    """The canary's slowest 1 % of pushes in [start, end): the canary process's own lateness
    before each send (waiting for a CPU, or its loop busy), the SENT round trip, the push."""
    canary = results.get("canary", {})
    latency, late, sent = (canary.get(k, {}) for k in ("latency", "send_late", "sent_in"))
    if not late:
        return ""
    seqs = [str(q) for q, wall in canary.get("scheduled", []) if start <= wall < end]
    slow = sorted((s for s in seqs if s in latency), key=lambda s: latency[s])
    slow = slow[-max(1, len(slow) // 100) :]
    if not slow:
        return ""

    def median(values: list[float]) -> str:
        values = sorted(values)
        return f"{values[len(values) // 2] * 1000:.0f} ms" if values else "-"

    return (
        f"{len(slow)} pushes of {median([latency[s] for s in slow])} (median): the canary "
        f"started its send {median([late[s] for s in slow if s in late])} late, SENT came "
        f"{median([sent[s] for s in slow if s in sent])} after it (medians)"
    )


def _at(series: list[Any], when: float) -> Any:
    """The last sample of ``series`` (rows starting with their wall time) at or before
    ``when``, else the first."""
    chosen = series[0]
    for row in series:
        if row[0] > when:
            break
        chosen = row
    return chosen


def _sched_detail(results: dict[str, Any], start: float, end: float) -> str:
    """Each process's CPU seconds and seconds waiting for a CPU inside [start, end): above
    its share of 2 vCPUs, whoever runs waits, and the canary's latency is then the machine's."""
    parts = []
    for name, series in sorted(results.get("sched", {}).items()):
        if not series:
            continue
        first, last = _at(series, start), _at(series, end)
        cpu, wait = (last[i] - first[i] for i in (1, 2))
        parts.append(f"{name} {cpu / 1e9:.1f}/{wait / 1e9:.1f}")
    if not parts:
        return ""
    text = f"over {end - start:.0f} s: " + ", ".join(parts)
    machine = results.get("machine_cpu", [])
    if machine:  # (the whole machine, every process: other work shares it too)
        first, last = _at(machine, start), _at(machine, end)
        ticks = [b - a for a, b in zip(first[1], last[1], strict=True)]
        hz = os.sysconf("SC_CLK_TCK")
        kinds = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
        text += "; the machine: " + ", ".join(
            f"{kind} {t / hz:.1f}" for kind, t in zip(kinds, ticks, strict=True) if t
        )
    return text


def _listen_detail(results: dict[str, Any], start: float, end: float) -> str:
    """The kernel's listen overflows (connects dropped: a full accept queue) inside
    [start, end), and the custom listener's longest accept queue seen."""
    series = results.get("listen", [])
    if not series:
        return ""
    first, last = _at(series, start), _at(series, end)
    queued = [row[3] for row in series if start <= row[0] < end and row[3] is not None]
    return (
        f"{last[1] - first[1]} overflows, {last[2] - first[2]} drops (the whole machine); "
        f"longest accept queue {max(queued, default=0)}"
    )


def _gc_detail(gc_info: dict[str, Any], start: float, end: float) -> str:
    """The collector's long pauses inside [start, end) by generation (wall time, and the
    CPU time they took: the wall time also counts waiting for a CPU), and the summary."""
    inside = [p for p in gc_info.get("pauses", []) if start <= p[0] < end]
    parts = []
    for gen in (0, 1, 2):
        wall = sorted(p[2] for p in inside if p[1] == gen)
        cpu = sorted(p[3] for p in inside if p[1] == gen and len(p) > 3)
        if wall:
            parts.append(
                f"gen {gen}: {len(wall)} (total {sum(wall):.0f} ms, worst {wall[-1]:.0f} ms"
                + (f"; CPU worst {cpu[-1]:.1f} ms)" if cpu else ")")
            )
    text = "; ".join(parts) or "none"
    if gc_info.get("summary"):
        text += f". Whole run: {gc_info['summary']}"
    return text


def _lag_detail(loop_info: dict[str, Any], start: float, end: float) -> str:
    """The loop's late timer ticks inside [start, end): how many, by how much (each is a
    loop iteration every client of the server waited for), and the whole run's summary."""
    inside = sorted(ms for t, ms in loop_info.get("lags", []) if start <= t < end)
    text = "none"
    if inside:
        over = ", ".join(f">= {s} ms: {sum(ms >= s for ms in inside)}" for s in (50, 100, 500))
        worst, total = inside[-1], sum(inside)
        text = f"{len(inside)} ticks ({over}; worst {worst:.0f} ms, total {total:.0f} ms)"
    if loop_info.get("summary"):
        text += f". Whole run: {loop_info['summary']}"
    return text


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=lambda kv: -kv[1]))


def _attack_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    plan = results["plan"]
    floods = {k: v for k, v in results.items() if k.startswith("flood-")}
    if floods:
        total: dict[str, float] = {}
        for part in floods.values():
            for key, value in part.items():
                if isinstance(value, int | float):
                    total[key] = total.get(key, 0) + value
        rows.append(("idle connections / partial frames", (
            f"{len(floods)} processes held up to {int(total['peak_open'])} of "
            f"{int(total['target'])} (share with a partial frame {plan['partial_share']:.2f}); "
            f"{int(total['connects'])} connects, {int(total['welcomed'])} welcomed, "
            f"{int(total['closed_before_welcome'])} closed before WELCOME, "
            f"{int(total['closed_after_welcome'])} closed by the server after it, "
            f"{int(total['connect_failed'])} connects failed; "
            f"{total['partial_bytes_sent'] / 1e6:.0f} MB of partial frames taken by the server"
        )))  # fmt: skip
    attacks = results.get("attacks", {})
    for name, part in attacks.items():
        if isinstance(part, dict):
            shown = {k: v for k, v in part.items() if k not in ("acked", "seen")}
            rows.append((name.replace("_", " "), json.dumps(shown)))
        else:
            rows.append((name.replace("_", " "), str(part)))
    if "grpc" in results:
        shown = {k: v for k, v in results["grpc"].items() if k not in ("acked", "seen")}
        rows.append(("gRPC load", json.dumps(shown)))
    canary = results.get("canary", {})
    if canary.get("failures"):
        rows.append(("canary send failures", _counts(canary["failures"])))
    for name, trace in results.get("failed_workers", {}).items():
        rows.append((f"worker {name} failed", "`" + trace.strip().splitlines()[-1] + "`"))
    return rows


def _load(load: Any) -> str:
    return ", ".join(f"{x:.1f}" for x in load) if load else "unknown"


def write_report(results: dict[str, Any], out: Path) -> None:
    """``results.json`` and ``REPORT.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    plan = results["plan"]
    lines = [
        "# Hostile scene (issue 14)",
        "",
        f"Started {results['started']}; scale {plan['scale']}, attack window "
        f"{plan['seconds']:.0f} s, every attack at once against a canary pair on `custom` "
        f"(a message every {plan['canary_interval'] * 1000:.0f} ms). Server descriptor limit "
        f"{results.get('fd_limit')}; accounts seeded in {results.get('seed_seconds', 0):.1f} s; "
        f"the guessed account's password hash has the {plan['login_cost']} cost; connection "
        f"cap {plan.get('server_cap') or 'the descriptor limit minus 64'}. Load average (1, 5, "
        f"15 min) at the start of the attacks {_load(results.get('load_at_go'))}, at their end "
        f"{_load(results.get('load_at_end'))} (2 vCPUs: above ~2 the server waits for a CPU). "
        f"Command: `{results.get('command', 'python -m bench.hostile')}`.",
        "",
        "| check | target | actual | verdict |",
        "|---|---|---|---|",
    ]
    for row in results["checks"]:
        actual = row["actual"].replace("|", "\\|")
        lines.append(f"| {row['name']} | {row['target']} | {actual} | {row['verdict']} |")
    cpu = {
        name: part["cpu_seconds"]
        for name, part in results.items()
        if isinstance(part, dict) and isinstance(part.get("cpu_seconds"), float)
    }
    server_cpu = results.get("server_cpu_seconds") or 0.0
    life = results.get("t_done", 0.0) - results.get("t_server", 0.0)
    lines += [
        "",
        f"CPU seconds used (the machine's {os.cpu_count()} vCPUs are shared by all of these and "
        f"by other work): server {server_cpu:.0f} in its {life:.0f} s of life "
        f"({server_cpu / life if life > 0 else 0:.2f} CPU on average); "
        + ", ".join(f"{name} {value:.0f}" for name, value in sorted(cpu.items()))
        + ".",
    ]
    lines += ["", "## What each attack did and saw", "", "| attack | figures |", "|---|---|"]
    for name, text in _attack_rows(results):
        lines.append(f"| {name} | {text.replace('|', '/')} |")
    errors = results.get("server_log_errors", [])
    if errors:
        lines += ["", "## Errors in the server's log", "", "```", *errors[:20], "```"]
    (out / "REPORT.md").write_text("\n".join(lines) + "\n")


__all__ = ["canary_latency", "canary_slow_by_slice", "checks", "percentile", "write_report"]
