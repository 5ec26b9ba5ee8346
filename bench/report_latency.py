"""REPORT.md's latency sections: the round trips with their ratios, every operation per store,
push delivery and the same-vCPU placement rows (bench/report.py puts the sections together).
Pure: every figure comes from the results dict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.config import FLOOR, NOISY_VCPUS
from bench.markdown import TIMES, fmt_x_ci, table, with_ci
from bench.markdown import fmt_us as _fmt_us
from bench.rounds import ratio_interval
from bench.stats import ratio
from bench.targets import (
    OPS,
    Row,
    find_latency,
    independent_row,
    is_reference,
    lean_row,
    order,
    p50,
    references,
    round_trip_row,
)

#: The per-operation latency tables: targets' OPS, then the history operations (issue 9),
#: then the account-security ones (issue 13; bench/latency.py ACCOUNT_OPS).
HISTORY_OPS = ("read_history", "mark_read", "list_conversations", "delete_messages")
ACCOUNT_OPS = ("resume", "change_password")
LATENCY_OPS = (*OPS, *HISTORY_OPS, *ACCOUNT_OPS)


def other(row: Row | None) -> str:
    """Other processes' work during a timing row, flagged when it disturbed the row."""
    value = None if row is None else row.get("other_vcpus")
    if value is None:
        return "—"
    return f"{value:.2f} ⚠" if value > NOISY_VCPUS else f"{value:.2f}"  # steal: its own cell


def steal(row: Row | None) -> str:
    """The hypervisor's steal during a timing row (vCPUs), flagged like a busy machine's
    other work from NOISY_VCPUS on; "—" for rows from before it was recorded."""
    value = None if row is None else row.get("steal_vcpus")
    if value is None:
        return "—"
    return f"{value:.2f} ⚠" if value >= NOISY_VCPUS else f"{value:.2f}"


def interference(row: Row | None) -> tuple[str, str]:
    """A timing row's ``INTERFERENCE_HEAD`` cells: other processes' work, then steal."""
    return other(row), steal(row)


#: The columns of what else the machine did while a timing row was measured.
INTERFERENCE_HEAD = ["other vCPUs", "steal vCPUs"]


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
            *interference(r),
        ]
        out.append(cells)
    return out


LAT_HEAD = ["transport", "op", "n", "p50 µs [95 %]", "p90 µs", "p99 µs [95 %]", "p99.9 µs"]
RATIO_HEAD = [f"p50 {TIMES} its reference", f"p50 {TIMES} {FLOOR}"]
CPU_HEAD = ["server CPU µs/op", "client CPU µs/op", *INTERFERENCE_HEAD]


def latency_section(results: dict[str, Any], images: Sequence[str]) -> str:
    parts = ["## Latency, one request in flight\n"]
    trips = []
    for t in order(results):
        trips += [r for r in (round_trip_row(results, t),) if r]
        if (lean := lean_row(results)) and lean["transport"] == t:
            trips.append(lean)
        trips += [r for r in (independent_row(results, t),) if r]
    parts.append(
        "Round trip with a 32-byte payload, memory store, client and server on different vCPUs "
        "(loopback: in one process). CPU columns: CPU time of each process over the timed loop "
        "÷ calls (loopback: the one process). *lean client*: the same server's send measured "
        "by the independent blocking client. *independent client*: the same server's send "
        "measured by a client written from the transport's contract with a stock library "
        "(bench/refs/independent.py: the websockets library's blocking client, grpcio's "
        "synchronous stubs), in blocks paired with ChatClient's (the targets read the pairs).\n"
    )
    parts.append(table(LAT_HEAD + RATIO_HEAD + CPU_HEAD, _latency_rows(trips, results, True)))
    if "latency_spectrum.png" in images:
        parts.append("\n![latency percentile spectrum](latency_spectrum.png)\n")
    rank = ranks(results)
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
        "deletes one id, for the caller only. `resume` logs in with the resume token a "
        "`change_password` just returned (no password hash); `change_password` checks the old "
        "password and hashes the new one: two argon2 hashes (`--hash-cost low`, ~0.3 ms CPU "
        "each), each handed to a thread off the event loop, which is most of its latency and "
        "server CPU (at the production cost one hash takes ~0.3 s of CPU, and would be all of "
        "it). No other session of the user is live, so none ends.\n"
    )
    return "\n".join(parts)


def ranks(results: dict[str, Any]) -> Callable[[str], int]:
    names = order(results)
    index = {name: i for i, name in enumerate(names)}
    return lambda name: index.get(name, len(names))


def deliver_section(results: dict[str, Any]) -> str:
    rank = ranks(results)
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


def placement_section(results: dict[str, Any]) -> str:
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


__all__ = [
    "HISTORY_OPS",
    "INTERFERENCE_HEAD",
    "LATENCY_OPS",
    "deliver_section",
    "interference",
    "latency_section",
    "other",
    "placement_section",
    "ranks",
    "steal",
]
