"""REPORT.md from a results dict, and the Targets it is judged by. Pure: no I/O, no measuring.

Every figure in the report comes from the run's own results.json, so a report can be
re-rendered from an old results file (``render(json.load(...), images)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench import flame, loadgen_scene, population, tls_report
from bench.config import FLOOR, NOISY_VCPUS
from bench.ladder import ladder_section
from bench.markdown import TIMES, _fmt, _fmt_x, fmt_x_ci, table, with_ci
from bench.markdown import fmt_rate as _fmt_rate
from bench.markdown import fmt_us as _fmt_us
from bench.rounds import ratio_interval
from bench.stats import ratio
from bench.targets import (
    BASE,
    GRPC,
    OPS,
    SIZE_KINDS,
    Row,
    disturbed,
    evaluate_targets,
    find_latency,
    is_reference,
    lean_row,
    order,
    p50,
    references,
    round_trip_row,
    saturation,
    standard_size_rows,
    total_bytes,
)

#: The per-operation latency tables: targets' OPS, then the history operations (issue 9).
HISTORY_OPS = ("read_history", "mark_read", "list_conversations", "delete_messages")
LATENCY_OPS = (*OPS, *HISTORY_OPS)

#: Average vCPUs of other processes' work above which the report warns that it was noisy.
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
        "sockets, the cheapest Python round trip).",
        "- CPU: every latency row carries the CPU time per call of the server process and of "
        "the client process (the bench's worker), so a client that is itself the bottleneck "
        "shows. The *lean* row is an independent client (bench/refs/lean_custom.py: a "
        "blocking socket around the custom codec) against the same server in the same run.",
        "- Interference: every timing row records `other vCPUs`, the work other processes did "
        "on the machine while it was measured. Above "
        f"{NOISY_VCPUS} (⚠) they competed with the measurement on these 2 vCPUs; such a step "
        f"was measured again (up to {plan.get('retries', '?')} more times within "
        f"{plan.get('retry_budget_s', '?')} s for the whole run) and the least disturbed "
        "attempt kept. A ⚠ that remains means the machine never went quiet: distrust that row.",
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
        f"client; SQLite rows: {plan.get('sqlite_share', 0):.0%} of the counts, {sqlite}; "
        f"open-loop steps at {', '.join(f'{f:.0%}' for f in plan.get('open_fractions', ()))} "
        "of the closed-loop rate"
    )


def _refs_in_words(results: dict[str, Any]) -> str:
    pairs = [f"{t} ÷ {ref}" for t, ref in references(results).items()]
    return ", ".join(pairs) or "none in this run"


def _other(row: Row | None) -> str:
    """Other processes' work during a timing row, flagged when it disturbed the row."""
    value = None if row is None else row.get("other_vcpus")
    if value is None:
        return "—"
    return f"{value:.2f} ⚠" if disturbed(row) else f"{value:.2f}"


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
    if other > BUSY_MACHINE:
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
            f"**{t['status']}**",
            t["detail"],
        )
        for t in targets
    ]
    return (
        "## Targets\n\n"
        "Each ratio with its 95 % interval over paired rounds: **PASS** only if the whole "
        "interval meets the limit, **MISS** only if none of it does, otherwise **not "
        "settled** (this run cannot tell; more rounds or a quieter machine can).\n\n"
        + table(["target", "measured [95 % interval]", "limit", "status", "from"], rows)
    )


def _limit(target: Row) -> str:
    better, limit = target["better"], target["limit"]
    if better == "within":
        return f"1 ± {limit}"
    return f"{'≤' if better == 'lower' else '≥'} {limit}"


def _name(r: Row) -> str:
    """A row's transport, marked when an independent client measured it."""
    return r["transport"] + (f" ({r['client']} client)" if r.get("client") else "")


def _latency_rows(rows: list[Row], results: dict[str, Any], with_ratios: bool) -> list[list[Any]]:
    out = []
    floor_row = find_latency(results, FLOOR, "echo")
    refs = references(results)
    for r in rows:
        ci = r.get("ci") or {}
        cells: list[Any] = [
            _name(r),
            r["op"],
            r["n"],
            with_ci(_fmt_us(r["p50_us"]), ci.get("p50_us")),
            _fmt_us(r["p90_us"]),
            with_ci(_fmt_us(r["p99_us"]), ci.get("p99_us")),
            _fmt_us(r["p999_us"]),
        ]
        if with_ratios:
            floor = refs.get(r["transport"])
            own = round_trip_row(results, floor) if floor else None
            cells += [
                fmt_x_ci(ratio(r["p50_us"], p50(own)), ratio_interval(r, own, "p50_us"))
                + (f" {floor}" if own else ""),
                fmt_x_ci(
                    ratio(r["p50_us"], p50(floor_row)), ratio_interval(r, floor_row, "p50_us")
                ),
            ]
        cells += [
            _fmt_us(r.get("server_cpu_us_per_op")),
            _fmt_us(r.get("client_cpu_us_per_op")),
            _other(r),
        ]
        out.append(cells)
    return out


LAT_HEAD = ["transport", "op", "n", "p50 µs [95 %]", "p90 µs", "p99 µs [95 %]", "p99.9 µs"]
RATIO_HEAD = [f"p50 {TIMES} its reference", f"p50 {TIMES} {FLOOR}"]
CPU_HEAD = ["server CPU µs/op", "client CPU µs/op", "other vCPUs"]


def _latency_section(results: dict[str, Any], images: Sequence[str]) -> str:
    parts = ["## Latency, one request in flight\n"]
    trips = []
    for t in order(results):
        trips += [r for r in (round_trip_row(results, t),) if r]
        if (lean := lean_row(results)) and lean["transport"] == t:
            trips.append(lean)
    parts.append(
        "Round trip with a 32-byte payload, memory store, client and server on different vCPUs "
        "(loopback: in one process). CPU columns: CPU time of each process over the timed loop "
        "÷ calls (loopback: the one process). *lean client*: the same server's send measured "
        "by the independent blocking client.\n"
    )
    parts.append(table(LAT_HEAD + RATIO_HEAD + CPU_HEAD, _latency_rows(trips, results, True)))
    if "latency_spectrum.png" in images:
        parts.append("\n![latency percentile spectrum](latency_spectrum.png)\n")
    rank = _ranks(results)
    for store, title in (("memory", "memory store"), ("sqlite", "SQLite file store")):
        rows = sorted(
            (
                r
                for r in results.get("latency", [])
                if r["store"] == store and r["op"] in LATENCY_OPS and r["placement"] != "same"
            ),
            key=lambda r: (LATENCY_OPS.index(r["op"]), rank(r["transport"]), bool(r.get("client"))),
        )
        if rows:
            parts.append(f"\n### Every operation, {title}\n")
            parts.append(table(LAT_HEAD + CPU_HEAD, _latency_rows(rows, results, False)))
    parts.append(
        "\nsignup/login include the argon2 hash at `--hash-cost low` (off the event loop). "
        "An `ack` that has no reply on its transport (the custom protocol's ACK is "
        "fire-and-forget, PROTOCOL.md) times the client handing the frame to the kernel; "
        "where Ack is a call with a reply (gRPC unary) it waits for it. `list_accounts` "
        "returns a page of 10 names. CPU of signup/login/logout/delete_account is summed call "
        "by call (the clocks read just outside each timed call). `read_history` reads a page "
        "of 50 messages (32 B bodies) of one 1:1 conversation by its id; `delete_messages` "
        "deletes one id, for the caller only.\n"
    )
    return "\n".join(parts)


def _ranks(results: dict[str, Any]) -> Callable[[str], int]:
    names = order(results)
    index = {name: i for i, name in enumerate(names)}
    return lambda name: index.get(name, len(names))


def _deliver_section(results: dict[str, Any]) -> str:
    rank = _ranks(results)
    rows = []
    for r in results.get("latency", []):
        if r["op"] != "deliver":
            continue
        all_row = find_latency(
            results, r["transport"], "deliver_all", store=r["store"], fanout=r["fanout"]
        )
        rows.append(
            (
                r["transport"],
                r["store"],
                r["fanout"],
                all_row["n"] if all_row else r["n"],
                _fmt_us(r["p50_us"]),
                _fmt_us(r["p99_us"]),
                _fmt_us(r["p999_us"]),
                _fmt_us(p50(all_row)),
                _fmt_us(None if all_row is None else all_row["p99_us"]),
                _fmt_us(r.get("server_cpu_us_per_op")),
                _fmt_us(r.get("client_cpu_us_per_op")),
            )
        )
    rows.sort(key=lambda c: (c[1] != "memory", rank(c[0]), c[2]))
    head = ["transport", "store", "fan-out", "samples", "p50 µs", "p99 µs", "p99.9 µs"]
    head += ["all sessions p50 µs", "all sessions p99 µs", "server CPU µs/send"]
    head += ["client CPU µs/send"]
    return (
        "## Push delivery\n\nFrom the call to send to the moment each of the recipient's live "
        "sessions yields the message from `messages()` (one sample per session; *all sessions*: "
        "until the last one has it). Sender and recipient sessions are clients in one process; "
        "recipients do not ack, so no ack traffic overlaps the next sample. CPU per message "
        "sent, every receiving session's work included.\n\n" + table(head, rows)
    )


def _placement_section(results: dict[str, Any]) -> str:
    if not any(r["placement"] == "same" for r in results.get("latency", [])):
        return ""  # not measured (quick mode)
    rows = []
    for transport in order(results):
        op = "echo" if is_reference(results, transport) else "send"
        same = find_latency(results, transport, op, placement="same")
        if same is None:
            continue
        cross = round_trip_row(results, transport)
        rows.append(
            (
                transport,
                op,
                _fmt_us(p50(cross)),
                _fmt_us(p50(same)),
                _fmt_us(None if cross is None else cross["p99_us"]),
                _fmt_us(same["p99_us"]),
                _fmt_us(same.get("server_cpu_us_per_op")),
                _fmt_us(same.get("client_cpu_us_per_op")),
            )
        )
    head = ["transport", "op", "p50 different vCPUs", "p50 same vCPU"]
    head += ["p99 different", "p99 same", "server CPU µs/op same", "client CPU µs/op same"]
    return (
        "## Placement: same vCPU vs different vCPUs\n\nThe 32 B round trip again with client "
        "and server pinned to one vCPU. A cross-vCPU wake-up costs tens of µs on this kind of "
        "machine, so placement moves these numbers several-fold.\n\n" + table(head, rows)
    )


#: CPU utilisation from which a process counts as the bottleneck of a closed-loop step.
SATURATED = 0.9


def limited_by(closed: Row) -> str:
    """What held a closed-loop step back: the server's vCPU, the generator's, or neither (the
    step waited on something else: the disk, a lock, the round trips themselves)."""
    server, client = closed.get("server_cpu_util"), closed.get("client_cpu_util")
    if server is None:
        return "—"
    if client is None:  # loopback: one process
        return "the process" if server >= SATURATED else "neither"
    if client >= SATURATED and client >= server:
        return "**generator**"
    if server >= SATURATED:
        return "server"
    return "neither"


#: The per-core columns beside every throughput figure (issue 12 item 4).
PER_CORE_HEAD = ["server CPU µs/op", "user + sys µs/op", "/s per server CPU-s", "CPU check"]


def per_core_cells(row: Row) -> list[str]:
    """Server CPU per operation by the clocks, the same split into user + system by the
    kernel's ticks (/proc/<pid>/stat), operations per second of server CPU (one core's
    worth), and the two ways' ratio (ticks ÷ clocks: 1.00 when they agree)."""
    user, system = row.get("server_user_us_per_op"), row.get("server_system_us_per_op")
    split = "—" if user is None or system is None else f"{_fmt_us(user)} + {_fmt_us(system)}"
    per_cpu = row.get("ops_per_server_cpu_s")
    if per_cpu is None:
        per_cpu = ratio(1e6, row.get("server_cpu_us_per_op"))
    check = row.get("server_cpu_check")
    return [
        _fmt_us(row.get("server_cpu_us_per_op")),
        split,
        _fmt_rate(per_cpu),
        "—" if check is None else f"{check:.2f}",
    ]


def _load_section(results: dict[str, Any], images: Sequence[str]) -> str:
    load = results.get("load", [])
    plan = results.get("meta", {}).get("plan", {})
    parts = [
        "## Throughput and latency under load\n",
        f"Each step sends over {plan.get('connections', '?')} connections (gRPC: channels), "
        "each its own user, to one offline recipient. "
        f"Closed loop: {plan.get('depth', '?')} requests outstanding per connection, "
        f"back to back for {plan.get('closed_s', '?')} s — the saturation "
        "rate and the CPU cost per operation of both sides. Open loop: fixed offered rates, "
        f"{plan.get('open_s', '?')} s per step, "
        "stepped as fractions of the closed-loop rate; every latency is timed from the request's "
        "*intended* send time, so stalls are not hidden. The generator busy-polls to keep to the "
        "schedule, so its CPU in open-loop rows is not a cost; *lag p99* is how late it sent. "
        f"*Limited by*: the process whose vCPU was at least {SATURATED:.0%} busy in the closed "
        "loop; where that is the generator, the row shows the client's limit, not the "
        "server's. Per core, beside every throughput figure: the server's CPU per operation "
        "by its CPU clock (nanoseconds), the same by the kernel's ticks split into user + "
        "system (/proc/<pid>/stat, 10 ms ticks), operations per second of server CPU (what "
        "one core would sustain), and *CPU check*, ticks ÷ clock (1.00: the two ways agree; "
        "a short step may differ by 0.01 s of ticks).\n",
    ]
    sat_rows = []
    grpc_sat = saturation(results, GRPC)
    grpc_rate = None if grpc_sat is None else grpc_sat["achieved_per_s"]
    for transport in order(results):
        for store in ("memory", "sqlite", "none"):
            best = saturation(results, transport, store)
            if best is None:
                continue
            closed: Row = next(
                (
                    r
                    for r in load
                    if (r["transport"], r["store"], r["mode"]) == (transport, store, "closed")
                ),
                {},
            )
            sat_rows.append(
                (
                    transport,
                    store,
                    _fmt_rate(best["achieved_per_s"]),
                    _fmt_x(ratio(best["achieved_per_s"], grpc_rate)),
                    *per_core_cells(closed or best),
                    _fmt_us(closed.get("client_cpu_us_per_op")),
                    _fmt_us(closed.get("p50_us")),
                    _fmt_us(closed.get("p99_us")),
                    limited_by(closed),
                    _other(best),
                )
            )
    head = ["transport", "store", "saturation /s", f"{TIMES} {GRPC}", *PER_CORE_HEAD]
    head += ["client CPU µs/op", "closed p50 µs", "closed p99 µs", "limited by", "other vCPUs"]
    parts.append(table(head, sat_rows))
    if "load.png" in images:
        parts.append("\n![latency and throughput vs offered load](load.png)\n")
    if "cpu_per_op.png" in images:
        parts.append("\n![CPU time per operation](cpu_per_op.png)\n")
    rank = _ranks(results)
    open_rows = sorted(
        (r for r in load if r["mode"] == "open"),
        key=lambda r: (rank(r["transport"]), r["store"], r["offered_per_s"] or 0),
    )
    if open_rows:
        head = ["transport", "store", "offered /s", "achieved /s", "p50 µs", "p99 µs"]
        head += ["p99.9 µs", *PER_CORE_HEAD, "lag p99 µs", "timeouts", "overloaded"]
        head += ["other vCPUs"]
        rows = [
            (
                r["transport"],
                r["store"],
                _fmt_rate(r["offered_per_s"]),
                _fmt_rate(r["achieved_per_s"]),
                _fmt_us(r["p50_us"]),
                _fmt_us(r["p99_us"]),
                _fmt_us(r["p999_us"]),
                *per_core_cells(r),
                _fmt_us(r.get("dispatch_lag_p99_us")),
                r.get("timeouts", 0),
                r.get("overloaded", False),
                _other(r),
            )
            for r in open_rows
        ]
        parts.append("\n### Open-loop steps\n")
        parts.append(table(head, rows))
    return "\n".join(parts)


def _sizes_section(results: dict[str, Any], images: Sequence[str]) -> str:
    sizes = results.get("sizes", [])
    parts = [
        "## Bytes on the wire\n",
        "Counted at the TCP level through a counting relay (so HTTP/2 frames and HPACK headers "
        "are included), per operation and direction, split into payload / framing / headers / "
        "control: each call's own frames, the same in every call; the connection's own frames "
        "(HTTP/2 WINDOW_UPDATE, PING, SETTINGS; WebSocket keepalive) are reported apart, "
        "below. *holds for*: the message and request ids for which a size holds.\n",
    ]
    if not sizes:
        parts.append("_(not measured in this run)_\n")
        return "\n".join(parts)
    if "bytes_per_op.png" in images:
        parts.append("![bytes per operation by kind](bytes_per_op.png)\n")
    if "bytes_vs_body.png" in images:
        parts.append("![bytes vs body size](bytes_vs_body.png)\n")
    per_op = standard_size_rows(sizes, results)
    head = ["op", "phase", "transport", "body B", "c2s B", "s2c B", "total B", f"{TIMES} {BASE}"]
    head += [f"{k} c2s+s2c" for k in SIZE_KINDS] + ["holds for"]
    rows = []
    for r in per_op:
        twin = next(
            (
                o
                for o in per_op
                if o["transport"] == BASE
                and (o.get("op"), o.get("phase")) == (r.get("op"), r.get("phase"))
            ),
            None,
        )
        rows.append(
            [
                r.get("op"),
                r.get("phase"),
                r["transport"],
                r.get("body_bytes"),
                r.get("c2s_bytes"),
                r.get("s2c_bytes"),
                total_bytes(r),
                _fmt_x(ratio(total_bytes(r), total_bytes(twin))),
            ]
            + [int(r.get(f"c2s_{k}", 0)) + int(r.get(f"s2c_{k}", 0)) for k in SIZE_KINDS]
            + [r.get("holds_for") or "—"]
        )
    parts.append(table(head, rows))
    parts.append(_rounds_of_bytes(results))
    # The definitions, the steady send with the ids it holds for, the timer-driven control
    # traffic: bench/report_bytes.py, beside the byte counters it describes.
    from bench.report_bytes import bytes_section

    parts.append(bytes_section(results, order(results)))
    return "\n".join(parts)


PAYLOAD_COLUMNS = (
    "op",
    "direction",
    "note",
    "text_bytes",
    "custom_message",
    "custom_bytes",
    "custom_frame_bytes",
    "protobuf_message",
    "protobuf_bytes",
    "grpc_message_bytes",
)


def _payload_section(results: dict[str, Any]) -> str:
    rows = [
        r
        for r in results.get("payload_sizes", [])
        if r.get("body_bytes") in (None, 32)
        and r.get("recipients") in (None, 1)
        and r.get("text") in (None, "ascii")
    ]
    intro = (
        "## Payload sizes\n\nEach message alone, without transport: the custom codec's body "
        "and whole frame vs protobuf `SerializeToString` (and + the 5-byte gRPC prefix) of the "
        "equivalent message; 32 B ASCII body, one recipient. `text_bytes`: the UTF-8 of its "
        "strings, which any encoding carries. The body-size, UTF-8 and recipient sweeps are in "
        "results.json.\n\n"
    )
    if not rows:
        return intro + "_(not measured in this run)_\n"
    return intro + table(PAYLOAD_COLUMNS, [[r.get(k) for k in PAYLOAD_COLUMNS] for r in rows])


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


def _rounds_of_bytes(results: dict[str, Any]) -> str:
    """Whether the byte figures re-measured in later rounds agreed with the full run."""
    checked = [r for r in results.get("sizes", []) if r.get("rounds_checked")]
    if not checked:
        return ""
    differ = [r for r in checked if not r.get("rounds_agree")]
    text = (
        f"\nRe-measured in later rounds: {len(checked)} call figures (each op's first and "
        f"steady call at 32 B), {len(checked) - len(differ)} identical in every round"
    )
    if not differ:
        return text + ": the byte figures are deterministic, so no spread is shown.\n"
    lines = [text + "; these differed (each round's c2s + s2c):\n"]
    for r in differ:
        values = ", ".join(
            f"{x.get('c2s_bytes')}+{x.get('s2c_bytes')}" for x in r.get("rounds", [])
        )
        lines.append(f"- {r['transport']} {r['op']} {r['phase']}: {values}")
    return "\n".join(lines) + "\n"


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
        lambda: _latency_section(results, images),
        lambda: _deliver_section(results),
        lambda: _placement_section(results),
        lambda: _load_section(results, images),
        lambda: loadgen_scene.section(results, images),  # issue 10's scenes: their own modules
        lambda: population.section(results, images),
        lambda: flame.section(results, images),
        lambda: tls_report.section(results, images),  # issue 13: TLS beside the plain rows
        lambda: _sizes_section(results, images),
        lambda: _payload_section(results),
        lambda: _trend_section(results, images),
        lambda: _errors_section(results),
    ]
    body = "\n".join(s for s in (section() for section in sections) if s)
    return (
        body + "\nFiles: `results.json` (schema in bench/SCHEMA.md) and the PNG plots beside it.\n"
    )


__all__ = ["SIZE_KINDS", "TIMES", "evaluate_targets", "render", "table"]
