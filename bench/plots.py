"""PNG figures of a results dict (matplotlib, Agg backend: files only, never a window).

Each function draws one figure if the run has the rows for it and returns its path, or None.
Transports keep one colour across every figure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from bench.config import REF_TRANSPORTS
from bench.targets import ORDER, SIZE_KINDS, round_trip_row, standard_size_rows

log = logging.getLogger(__name__)

COLOURS = {
    "custom": "#1f77b4",
    "grpc": "#d62728",
    "loopback": "#2ca02c",
    "tcp_echo": "#9467bd",
    "grpc_echo": "#ff7f0e",
    "tcp_floor": "#7f7f7f",
}
KIND_COLOURS = {
    "payload": "#4c72b0",
    "framing": "#55a868",
    "headers": "#c44e52",
    "control": "#8172b2",
}
DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _style(transport: str) -> dict[str, Any]:
    return {
        "color": COLOURS.get(transport, "black"),
        "linestyle": "--" if transport in REF_TRANSPORTS else "-",
        "label": transport,
    }


def latency_spectrum(results: dict[str, Any], path: Path) -> Path | None:
    """Latency at each percentile of the 32 B round trip, one line per transport."""
    rows = [r for t in ORDER if (r := round_trip_row(results, t)) and r.get("spectrum")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for r in rows:
        pts = [(p, us) for p, us in r["spectrum"] if p < 100]
        xs = [1 / (1 - p / 100) for p, _ in pts]
        ax.plot(xs, [us for _, us in pts], marker="o", markersize=3, **_style(r["transport"]))
    ticks = [0, 50, 90, 99, 99.9, 99.99]
    ax.set_xscale("log")
    ax.set_xticks([1 / (1 - p / 100) for p in ticks], [f"p{p:g}" for p in ticks])
    ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel("round trip (µs, log)")
    ax.set_title("Round-trip latency spectrum, 32 B, one in flight (send / echo)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def load_curves(results: dict[str, Any], path: Path) -> Path | None:
    """p50/p99 vs offered rate (left) and achieved vs offered (right), memory/none store."""
    rows = [r for r in results.get("load", []) if r["mode"] == "open" and r["store"] != "sqlite"]
    if not rows:
        return None
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(12, 4.8))
    top = 0.0
    for transport in ORDER:
        mine = sorted(
            (r for r in rows if r["transport"] == transport), key=lambda r: r["offered_per_s"]
        )
        if not mine:
            continue
        offered = [r["offered_per_s"] for r in mine]
        style = _style(transport)
        lat.plot(offered, [r["p50_us"] for r in mine], marker="o", **style)
        style.update(label=f"{transport} p99", alpha=0.6, linestyle=":")
        lat.plot(offered, [r["p99_us"] for r in mine], marker="^", **style)
        thr.plot(offered, [r["achieved_per_s"] for r in mine], marker="o", **_style(transport))
        top = max(top, *offered)
    thr.plot(
        [0, top], [0, top], color="black", linewidth=0.8, alpha=0.5, label="achieved = offered"
    )
    for ax in (lat, thr):
        ax.set_xscale("log")
        ax.set_xlabel("offered rate (requests/s, log)")
        ax.grid(True, which="both", alpha=0.3)
    lat.set_yscale("log")
    lat.set_ylabel("latency from intended send time (µs, log)")
    lat.set_title("Latency vs offered load (p50 solid, p99 dotted)")
    lat.legend(fontsize=7, ncol=2)
    thr.set_yscale("log")
    thr.set_ylabel("achieved (requests/s, log)")
    thr.set_title("Achieved vs offered throughput")
    thr.legend(fontsize=7)
    return _save(fig, path)


def cpu_per_op(results: dict[str, Any], path: Path) -> Path | None:
    """Server and client CPU µs per operation in the closed-loop step, per transport."""
    rows = [
        r
        for t in ORDER
        for r in results.get("load", [])
        if r["transport"] == t and r["mode"] == "closed" and r["store"] != "sqlite"
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = range(len(rows))
    server = [r.get("server_cpu_us_per_op") or 0 for r in rows]
    client = [r.get("client_cpu_us_per_op") or 0 for r in rows]
    ax.bar([x - 0.2 for x in xs], server, width=0.4, label="server", color="#4c72b0")
    ax.bar([x + 0.2 for x in xs], client, width=0.4, label="client", color="#dd8452")
    ax.set_xticks(list(xs), [f"{r['transport']}\n{r['op']}" for r in rows])
    ax.set_ylabel("CPU time per operation (µs)")
    ax.set_title("CPU per operation at saturation (closed loop; loopback: one process)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def bytes_per_op(results: dict[str, Any], path: Path) -> Path | None:
    """Steady-state bytes per operation (both directions), stacked by kind, per transport."""
    rows = [r for r in standard_size_rows(results.get("sizes", [])) if r.get("phase") == "steady"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(rows) + 2), 5))
    xs = range(len(rows))
    bottom = [0.0] * len(rows)
    for kind in SIZE_KINDS:
        values = [float(r.get(f"c2s_{kind}", 0)) + float(r.get(f"s2c_{kind}", 0)) for r in rows]
        ax.bar(xs, values, bottom=bottom, label=kind, color=KIND_COLOURS[kind])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for x, total in zip(xs, bottom, strict=True):
        ax.annotate(f"{total:.0f}", (x, total), ha="center", va="bottom", fontsize=7)
    labels = [f"{r['op'].replace('_', chr(10))}\n{r['transport']}" for r in rows]
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("bytes per operation, both directions")
    ax.set_title("Bytes on the wire per operation (steady state), by kind")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def bytes_vs_body(results: dict[str, Any], path: Path) -> Path | None:
    """Steady-state send bytes (both directions) against body size (left), and what the
    transport adds on top of the body (right), for ASCII and UTF-8 text."""
    rows = [
        r
        for r in results.get("sizes", [])
        if r.get("op") == "send" and r.get("phase") == "steady" and r.get("recipients", 1) == 1
    ]
    if len({r.get("body_bytes") for r in rows}) < 2:
        return None
    fig, (total, extra) = plt.subplots(1, 2, figsize=(12, 4.8))
    for transport in ORDER:
        for text, marker in (("ascii", "o"), ("utf8", "s")):
            mine = sorted(
                (r for r in rows if r["transport"] == transport and r.get("text", "ascii") == text),
                key=lambda r: r["body_bytes"],
            )
            if not mine:
                continue
            style = _style(transport)
            style.update(label=f"{transport} ({text})", marker=marker, markersize=4)
            if text == "utf8":
                style.update(linestyle=":", fillstyle="none", markersize=8)
            bodies = [r["body_bytes"] for r in mine]
            wire = [r["c2s_bytes"] + r["s2c_bytes"] for r in mine]
            total.plot(bodies, wire, **style)
            extra.plot(bodies, [w - b for w, b in zip(wire, bodies, strict=True)], **style)
    for ax in (total, extra):
        ax.set_xscale("symlog", linthresh=16)
        ax.set_xlabel("body size (bytes of UTF-8)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    total.set_yscale("log")
    total.set_ylabel("bytes per send, both directions (log)")
    total.set_title("Bytes per send vs body size (steady state)")
    extra.set_ylim(bottom=0)
    extra.set_ylabel("bytes per send minus the body")
    extra.set_title("What the transport adds (UTF-8 at the same byte count: hollow)")
    return _save(fig, path)


FIGURES: dict[str, Callable[[dict[str, Any], Path], Path | None]] = {
    "bytes_per_op.png": bytes_per_op,
    "bytes_vs_body.png": bytes_vs_body,
    "latency_spectrum.png": latency_spectrum,
    "load.png": load_curves,
    "cpu_per_op.png": cpu_per_op,
}


def draw_all(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Every figure the results have data for; a figure that fails is logged and skipped."""
    written = []
    for name, draw in FIGURES.items():
        try:
            path = draw(results, Path(out_dir) / name)
        except Exception:
            log.exception("plot %s failed", name)
            plt.close("all")
            continue
        if path is not None:
            written.append(path)
    return written


__all__ = ["FIGURES", "draw_all"]
