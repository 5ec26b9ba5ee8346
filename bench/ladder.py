"""Where the cost goes: the ``send`` of each rung of the transport ladder, and what each step
adds. Pure: read from a results dict, never measured here.

The ladder (DESIGN.md, "The transport ladder"; ``transports.registry.LADDER``) goes from the
custom protocol to gRPC unary one change at a time, each rung naming what it changes
(``Entry.isolates``), so the difference between two neighbouring rungs has one cause.
Transports that stand beside the ladder (websocket) are read against its first rung.

Per rung, for the 32 B ``send`` to one offline recipient (memory store, one call in flight,
client and server on different vCPUs):

* bytes each way of the steady call (the bytes-on-the-wire rows: ``op=send, phase=steady``);
* p50 latency, and the CPU time per call of the server process and of the client process
  (the latency row's ``server_cpu_us_per_op`` and ``client_cpu_us_per_op``), timed by the
  rung's *independent client* (bench/refs/independent.py: a blocking client written from the
  transport's contract with a stock library, ``timed_by``), and the product's ChatClient p50
  beside it (``chat_p50_us``). The ladder asks what each *protocol* costs, so each rung is
  timed by the leanest faithful client of it: the product's clients are asyncio clients, and
  an event loop's wake-up per reply (and, on gRPC, grpc.aio's polling thread: a bare grpc.aio
  stub is ~1.16x grpcio's synchronous stub) is a cost of the client library, the same for any
  wire, which would blur the steps. A run without an independent row of a transport times its
  rung by ChatClient (RUNG_CLIENTS);
* the closed-loop saturation rate (for scale; not part of the decomposition).

Intervals (bench/rounds.py): every timed figure of a rung carries its 95 % interval over the
rounds (``<figure>_ci``), and every step its own, computed on the step itself over paired
rounds (``delta_<figure>_ci`` for the difference, ``<figure>_x_from`` with
``<figure>_x_from_ci`` for the ratio to the rung it is read against). Byte figures are
deterministic and have none.

The transports and their ladder order come from the run's own ``meta.registry`` (what the
registry said when the run was made), or from the registry itself for older results files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.markdown import TIMES, fmt_rate, fmt_us, fmt_x_ci, signed, table, with_ci
from bench.rounds import difference_interval, interval_of, ratio_interval
from bench.stats import ratio

Row = dict[str, Any]

#: The figures of a rung that the steps decompose, with their units.
METRICS: dict[str, str] = {
    "total_bytes": "B",
    "p50_us": "µs",
    "server_cpu_us": "µs",
    "client_cpu_us": "µs",
}
#: The latency row's field behind each timed figure of a rung.
TIMED: dict[str, str] = {
    "p50_us": "p50_us",
    "server_cpu_us": "server_cpu_us_per_op",
    "client_cpu_us": "client_cpu_us_per_op",
}


def registry_info(results: dict[str, Any]) -> list[Row]:
    """One dict per transport (name, label, wire, reference, isolates, ladder), registry order."""
    info = results.get("meta", {}).get("registry")
    if info:
        return list(info)
    from transports import registry

    return [
        {
            "name": e.name,
            "label": e.label,
            "wire": e.wire,
            "reference": e.reference,
            "isolates": e.isolates,
            "ladder": e.name in registry.LADDER,
        }
        for e in registry.BY_NAME.values()
    ]


#: The client whose ``send`` row times a rung, first choice first: an independent client
#: written from the transport's contract (bench/refs/independent.py), then the product's
#: ChatClient (no ``client`` field) when a run has no independent row of the transport.
RUNG_CLIENTS = ("independent", None)
#: ``timed_by`` of a rung timed by the product's client.
PRODUCT_CLIENT = "ChatClient"


def timed_independently(rungs: list[Row]) -> bool:
    """Some rung is timed by an independent client (runs since stop 24)."""
    return any(r.get("timed_by") not in (None, PRODUCT_CLIENT) for r in rungs)


def _send_row(results: dict[str, Any], transport: str, client: str | None = None) -> Row | None:
    for row in results.get("latency", []):
        if (
            row["transport"] == transport
            and row["op"] == "send"
            and row["store"] == "memory"
            and row["placement"] in ("cross", "unpinned")
            and row.get("client") == client
        ):
            return row
    return None


def _rung_row(results: dict[str, Any], transport: str) -> Row | None:
    """The ``send`` row that times a rung (RUNG_CLIENTS)."""
    for client in RUNG_CLIENTS:
        row = _send_row(results, transport, client)
        if row is not None:
            return row
    return None


def _steady_send_bytes(results: dict[str, Any], transport: str) -> Row | None:
    rows = [
        r
        for r in results.get("sizes", [])
        if r.get("transport") == transport
        and r.get("op") == "send"
        and r.get("phase") == "steady"
        and r.get("recipients", 1) in (1, None)
        and r.get("text", "ascii") in ("ascii", None)
    ]
    return min(rows, key=lambda r: abs((r.get("body_bytes") or 0) - 32), default=None)


def _saturation(results: dict[str, Any], transport: str) -> float | None:
    rates = [
        r["achieved_per_s"]
        for r in results.get("load", [])
        if r["transport"] == transport and r["store"] == "memory" and r.get("completed")
    ]
    return max(rates, default=None)


def _delta(now: float | None, before: float | None) -> float | None:
    if now is None or before is None:
        return None
    return round(now - before, 2)


def ladder(results: dict[str, Any]) -> list[Row]:
    """The rungs in ladder order, then the transports beside it; each with its figures and its
    step from the rung it is read against (``from``; None for the first rung)."""
    info = [i for i in registry_info(results) if i.get("wire")]
    rungs = [i for i in info if i.get("ladder")]
    beside = [i for i in info if not i.get("ladder")]
    measured = {r["transport"] for r in results.get("latency", [])} | {
        r.get("transport") for r in results.get("sizes", [])
    }
    out: list[Row] = []
    previous: Row | None = None
    first: Row | None = None
    sends: dict[str, Row | None] = {}
    for item in [*rungs, *beside]:
        name = item["name"]
        if name not in measured:
            continue
        send, size = _rung_row(results, name), _steady_send_bytes(results, name)
        chat = _send_row(results, name)
        c2s = None if size is None else size.get("c2s_bytes")
        s2c = None if size is None else size.get("s2c_bytes")
        row: Row = {
            "transport": name,
            "label": item.get("label", name),
            "on_ladder": bool(item.get("ladder")),
            "isolates": item.get("isolates") or "",
            "c2s_bytes": c2s,
            "s2c_bytes": s2c,
            "total_bytes": None if c2s is None or s2c is None else c2s + s2c,
            "p50_us": None if send is None else send.get("p50_us"),
            "server_cpu_us": None if send is None else send.get("server_cpu_us_per_op"),
            "client_cpu_us": None if send is None else send.get("client_cpu_us_per_op"),
            "timed_by": None if send is None else (send.get("client_impl") or PRODUCT_CLIENT),
            "chat_p50_us": None if chat is None else chat.get("p50_us"),
            "chat_p50_us_ci": interval_of(chat, "p50_us"),
            "saturation_per_s": _saturation(results, name),
        }
        base = previous if row["on_ladder"] else first
        row["from"] = None if base is None else base["transport"]
        if row["on_ladder"] and first is None:
            first = row
        sends[name] = send
        for metric in METRICS:
            row[f"delta_{metric}"] = None if base is None else _delta(row[metric], base[metric])
            row[f"{metric}_x_first"] = (
                None if first is None else _round(ratio(row[metric], first[metric]))
            )
        for metric, field in TIMED.items():
            base_send = None if base is None else sends.get(base["transport"])
            row[f"{metric}_ci"] = interval_of(send, field)
            row[f"delta_{metric}_ci"] = (
                None if base_send is None else difference_interval(send, base_send, field)
            )
            row[f"{metric}_x_from"] = (
                None if base is None else _round(ratio(row[metric], base[metric]))
            )
            row[f"{metric}_x_from_ci"] = (
                None if base_send is None else ratio_interval(send, base_send, field)
            )
        out.append(row)
        if row["on_ladder"]:
            previous = row
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _cell(value: float | None, delta: float | None = None) -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    if delta is not None:
        text += f" ({delta:+,.0f})" if abs(delta) >= 100 else f" ({delta:+.1f})"
    return text


def format_ladder(rungs: list[Row]) -> str:
    """The ladder as plain text for a terminal: a line per rung, deltas in brackets, then the
    cause of each step."""
    head = ("transport", "bytes c2s+s2c", "p50 µs", "server CPU µs", "client CPU µs")
    lines = []
    for r in rungs:
        name = r["transport"] if r["on_ladder"] else f"{r['transport']} (beside)"
        size = "—"
        if r["c2s_bytes"] is not None and r["s2c_bytes"] is not None:
            size = f"{r['c2s_bytes']}+{r['s2c_bytes']}"
            if r["delta_total_bytes"] is not None:
                size += f" ({r['delta_total_bytes']:+.0f})"
        lines.append(
            (
                name,
                size,
                _cell(r["p50_us"], r["delta_p50_us"]),
                _cell(r["server_cpu_us"], r["delta_server_cpu_us"]),
                _cell(r["client_cpu_us"], r["delta_client_cpu_us"]),
            )
        )
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    out = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *lines]
    ]
    out += [
        f"  {r['from']} -> {r['transport']}: {r['isolates']}"
        for r in rungs
        if r["from"] is not None and r["isolates"]
    ]
    return "\n".join(out) + "\n"


def _gap_in_words(rungs: list[Row], metric: str, unit: str, what: str) -> str | None:
    """'p50: custom 114 µs -> grpc 575 µs (+461 µs): encoding +5 µs (1 %), ...'."""
    on = [r for r in rungs if r["on_ladder"] and r.get(metric) is not None]
    if len(on) < 2:
        return None
    first, last = on[0], on[-1]
    gap = last[metric] - first[metric]
    steps = []
    for r in on[1:]:
        delta = r.get(f"delta_{metric}")
        share = f" ({delta / gap:.0%})" if delta is not None and gap else ""
        steps.append(f"{r['transport']} {signed(delta, unit)}{share}")
    return (
        f"- **{what}**: {first['transport']} {first[metric]:,.1f} {unit} → {last['transport']} "
        f"{last[metric]:,.1f} {unit} ({signed(gap, unit)}, {last[metric] / first[metric]:.1f}"
        f"{TIMES}): " + ", ".join(steps) + "."
        if first[metric]
        else None
    )


def _step(rung: Row, metric: str) -> str:
    """A step's delta with its interval over paired rounds: ``+44.4 µs [+30.1, +61.0]``."""
    return with_ci(signed(rung.get(f"delta_{metric}"), "µs"), rung.get(f"delta_{metric}_ci"), _pm)


def _pm(value: float) -> str:
    return f"{value:+,.0f}" if abs(value) >= 100 else f"{value:+.1f}"


def ladder_section(results: dict[str, Any], images: Sequence[str]) -> str:
    """REPORT.md's "Where the cost goes": the table, the gap in words, the figure."""
    rungs = results.get("ladder") or ladder(results)
    parts = [
        "## Where the cost goes\n",
        "The 32 B `send` to one offline recipient on every rung of the transport ladder "
        "(DESIGN.md), each rung changing one thing from the one before it, so each step's "
        "delta has the cause in the *changes* column. Transports beside the ladder are "
        "compared with its first rung. Bytes: the steady call, both directions; p50 and CPU "
        "per call: timed by each rung's independent client (a blocking client written from "
        "the transport's contract with a stock library, bench/refs/independent.py: the "
        "ladder asks what each protocol costs, not what an event loop adds to every client "
        "alike), memory store, one call in flight, different vCPUs, the median over rounds "
        "with its 95 % interval in brackets; each step's Δ and ratio carry their own "
        "interval, computed on the step over paired rounds (bench/rounds.py). *ChatClient "
        "p50*: the product's asyncio client on the same rung, for comparison. Saturation: "
        "the best load step.\n",
    ]
    if not rungs:
        parts.append("_(no wire transport measured in this run)_\n")
        return "\n".join(parts)
    head = ["transport", "changes (from)", "c2s B", "s2c B", "Δ bytes", "p50 µs", "Δ p50"]
    head += [f"p50 {TIMES} from", "server CPU µs", "Δ server", "client CPU µs", "Δ client"]
    head += ["ChatClient p50 µs", "saturation /s"]
    rows = []
    for r in rungs:
        cause = r["isolates"] or ("the start of the ladder" if r["from"] is None else "—")
        if r["from"] is not None:
            cause += f" (from {r['from']})"
        rows.append(
            [
                r["transport"] if r["on_ladder"] else f"{r['transport']} (beside)",
                cause,
                r["c2s_bytes"],
                r["s2c_bytes"],
                signed(r["delta_total_bytes"], "B"),
                with_ci(fmt_us(r["p50_us"]), r.get("p50_us_ci")),
                _step(r, "p50_us"),
                fmt_x_ci(r.get("p50_us_x_from"), r.get("p50_us_x_from_ci")),
                with_ci(fmt_us(r["server_cpu_us"]), r.get("server_cpu_us_ci")),
                _step(r, "server_cpu_us"),
                with_ci(fmt_us(r["client_cpu_us"]), r.get("client_cpu_us_ci")),
                _step(r, "client_cpu_us"),
                with_ci(fmt_us(r.get("chat_p50_us")), r.get("chat_p50_us_ci")),
                fmt_rate(r["saturation_per_s"]),
            ]
        )
    parts.append(table(head, rows))
    words = [
        _gap_in_words(rungs, "total_bytes", "B", "bytes per send"),
        _gap_in_words(rungs, "p50_us", "µs", "p50"),
        _gap_in_words(rungs, "server_cpu_us", "µs", "server CPU per send"),
        _gap_in_words(rungs, "client_cpu_us", "µs", "client CPU per send"),
    ]
    if any(words):
        parts.append("\nThe gap from the first rung to the last, step by step:\n")
        parts.append("\n".join(w for w in words if w) + "\n")
    timed_by = [f"{r['transport']}: {r['timed_by']}" for r in rungs if r.get("timed_by")]
    if timed_by:
        parts.append("\nEach rung timed by: " + "; ".join(timed_by) + ".\n")
    if "ladder.png" in images:
        parts.append("\n![where the cost goes: the ladder for send](ladder.png)\n")
    return "\n".join(parts)


__all__ = [
    "METRICS",
    "PRODUCT_CLIENT",
    "format_ladder",
    "ladder",
    "ladder_section",
    "registry_info",
    "timed_independently",
]
