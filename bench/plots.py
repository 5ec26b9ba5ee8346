"""PNG figures of a results dict (matplotlib, Agg backend: files only, never a window).

Each function draws one figure if the run has the rows for it and returns its path, or None.
Every transport and reference row of the run is drawn (bench.targets.order: the registry's
order), and each keeps one colour across every figure: the registry's transports take the
palette in registry order, the reference rows the dashed lines and the colours after them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from bench import loadgen_scene, population
from bench.config import FLOOR
from bench.ladder import ladder, timed_independently
from bench.targets import (
    SIZE_KINDS,
    is_reference,
    label,
    order,
    round_trip_row,
    standard_size_rows,
)

log = logging.getLogger(__name__)

#: Colours in the order they are handed out (matplotlib's tab10, reordered so the ladder runs
#: blue -> cyan -> orange -> red, then tab20's lighter half): the registry's transports first,
#: then the reference rows.
PALETTE = (
    "#2ca02c",
    "#1f77b4",
    "#17becf",
    "#ff7f0e",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
)
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


def colours(results: dict[str, Any]) -> dict[str, str]:
    """One colour per transport and reference row of the run, the same in every figure.

    The registry's transports keep their palette slot by position among *all* registry
    entries (present or not), then their reference rows and the floor, so a run that measured
    only some of them colours them as a full run does.
    """
    from transports import registry

    names = [e.name for e in registry.ENTRIES]
    names += [e.reference for e in registry.ENTRIES if e.reference]
    names = list(dict.fromkeys([*names, FLOOR, *order(results)]))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _legend(results: dict[str, Any], transport: str) -> str:
    """A transport's registry label with its name; a reference row's name."""
    text = label(results, transport)
    return transport if text == transport else f"{text} ({transport})"


#: Short names of the generators that drive load rows (bench/load.py's ``engine``), for the
#: labels of a transport measured by more than one (custom, protobuf-tcp: the product client's
#: closed loop beside the lean frame generator's, bench/refs/lean_load.py).
ENGINE_LABELS = {
    "client": "ChatClient",
    "lean-frames": "lean gen.",
    "lean-ws": "lean ws gen.",
    "lean": "lean echo gen.",
}


def engine_of(row: dict[str, Any]) -> str:
    """The generator of a load row; a row from before ``engine`` was the product client's."""
    return str(row.get("engine") or "client")


def mixed_engines(rows: list[dict[str, Any]]) -> set[str]:
    """The transports among ``rows`` (load rows) measured by more than one generator."""
    seen: dict[str, set[str]] = {}
    for r in rows:
        seen.setdefault(r["transport"], set()).add(engine_of(r))
    return {t for t, engines in seen.items() if len(engines) > 1}


def engine_label(results: dict[str, Any], row: dict[str, Any]) -> str:
    """The generator of a load row in a label: a reference's client is its own, not ours."""
    engine = engine_of(row)
    if engine == "client" and is_reference(results, row["transport"]):
        return "own client"
    return ENGINE_LABELS.get(engine, engine)


def _styler(results: dict[str, Any]) -> Callable[[str], dict[str, Any]]:
    palette = colours(results)

    def style(transport: str) -> dict[str, Any]:
        return {
            "color": palette.get(transport, "black"),
            "linestyle": "--" if is_reference(results, transport) else "-",
            "label": _legend(results, transport),
        }

    return style


def latency_spectrum(results: dict[str, Any], path: Path) -> Path | None:
    """Latency at each percentile of the 32 B round trip, one line per transport."""
    rows = [r for t in order(results) if (r := round_trip_row(results, t)) and r.get("spectrum")]
    if not rows:
        return None
    _style = _styler(results)
    fig, ax = plt.subplots(figsize=(9, 5.2))
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
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def load_curves(results: dict[str, Any], path: Path) -> Path | None:
    """p50/p99 vs offered rate (left) and achieved vs offered (right), memory/none store: a
    line per transport and generator, the generator named where a transport has load rows
    from more than one (its open steps: the lean frame generator's)."""
    every = [r for r in results.get("load", []) if r["store"] != "sqlite"]
    rows = [r for r in every if r["mode"] == "open"]
    if not rows:
        return None
    mixed = mixed_engines(every)
    _style = _styler(results)
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(13, 5.2))
    top = 0.0
    for transport in order(results):
        engines = dict.fromkeys(engine_of(r) for r in rows if r["transport"] == transport)
        for n, engine in enumerate(engines):
            mine = sorted(
                (r for r in rows if r["transport"] == transport and engine_of(r) == engine),
                key=lambda r: r["offered_per_s"],
            )
            offered = [r["offered_per_s"] for r in mine]
            style = _style(transport)
            if transport in mixed:
                style["label"] = f"{style['label']} ({engine_label(results, mine[0])})"
            marker = ("o", "s", "D")[n % 3]  # a second generator's line: same colour, new marker
            thr.plot(offered, [r["achieved_per_s"] for r in mine], marker=marker, **style)
            lat.plot(offered, [r["p50_us"] for r in mine], marker=marker, **style)
            style.update(label=f"{style['label']} p99", alpha=0.6, linestyle=":")
            lat.plot(offered, [r["p99_us"] for r in mine], marker="^", **style)
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
    """Server and client CPU µs per operation in the closed-loop step, per transport; a
    transport with closed-loop rows from two generators (custom, protobuf-tcp: the product
    client's and the lean frame generator's) has a pair of bars for each, the generator
    named under them."""
    rows = [
        r
        for t in order(results)
        for r in results.get("load", [])
        if r["transport"] == t and r["mode"] == "closed" and r["store"] != "sqlite"
    ]
    if not rows:
        return None
    mixed = mixed_engines(rows)
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(rows) + 2), 4.8))
    xs = range(len(rows))
    server = [r.get("server_cpu_us_per_op") or 0 for r in rows]
    client = [r.get("client_cpu_us_per_op") or 0 for r in rows]
    ax.bar([x - 0.2 for x in xs], server, width=0.4, label="server", color="#4c72b0")
    ax.bar([x + 0.2 for x in xs], client, width=0.4, label="client", color="#dd8452")
    ticks = [
        f"{r['transport']}\n({engine_label(results, r)})\n{r['op']}"
        if r["transport"] in mixed
        else f"{r['transport']}\n{r['op']}"
        for r in rows
    ]
    ax.set_xticks(list(xs), ticks, fontsize=7)
    ax.set_ylabel("CPU time per operation (µs)")
    title = "CPU per operation at saturation (closed loop; loopback: one process)"
    if mixed:
        title += (
            f"\n{ENGINE_LABELS['lean-frames']}: the lean frame generator, "
            f"{ENGINE_LABELS['lean-ws']}: the lean websocket generator (their client bars: the "
            f"generators' CPU); {ENGINE_LABELS['client']}: the product client, at its own rate"
        )
    ax.set_title(title, fontsize=10 if mixed else None)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def bytes_per_op(results: dict[str, Any], path: Path) -> Path | None:
    """Steady-state bytes per operation (both directions), stacked by kind: one panel per
    operation, a bar per transport (the same order and tick labels in every panel)."""
    rows = [
        r
        for r in standard_size_rows(results.get("sizes", []), results)
        if r.get("phase") == "steady"
    ]
    if not rows:
        return None
    ops = list(dict.fromkeys(r["op"] for r in rows))
    names = [t for t in order(results) if any(r["transport"] == t for r in rows)]
    cols = min(3, len(ops))
    lines = -(-len(ops) // cols)
    fig, axes = plt.subplots(
        lines, cols, figsize=(4.6 * cols, 3.4 * lines), squeeze=False, sharey=False
    )
    for ax, op in zip(axes.flat, ops, strict=False):
        mine = {r["transport"]: r for r in rows if r["op"] == op}
        xs = range(len(names))
        bottom = [0.0] * len(names)
        for kind in SIZE_KINDS:
            values = [
                float(mine[t].get(f"c2s_{kind}", 0)) + float(mine[t].get(f"s2c_{kind}", 0))
                if t in mine
                else 0.0
                for t in names
            ]
            ax.bar(xs, values, bottom=bottom, label=kind, color=KIND_COLOURS[kind])
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for x, t, total in zip(xs, names, bottom, strict=True):
            if t in mine:
                ax.annotate(f"{total:.0f}", (x, total), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(op, fontsize=9)
        ax.margins(y=0.15)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(ops) :]:
        ax.set_visible(False)
    axes.flat[0].set_ylabel("bytes, both directions")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Bytes on the wire per operation (steady state), by kind")
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
    _style = _styler(results)
    fig, (total, extra) = plt.subplots(1, 2, figsize=(13, 5.2))
    for transport in order(results):
        for text, marker in (("ascii", "o"), ("utf8", "s")):
            mine = sorted(
                (r for r in rows if r["transport"] == transport and r.get("text", "ascii") == text),
                key=lambda r: r["body_bytes"],
            )
            if not mine:
                continue
            style = _style(transport)
            style.update(label=f"{style['label']} {text}", marker=marker, markersize=4)
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
        ax.legend(fontsize=7, ncol=2)
    total.set_yscale("log")
    total.set_ylabel("bytes per send, both directions (log)")
    total.set_title("Bytes per send vs body size (steady state)")
    extra.set_ylim(bottom=0)
    extra.set_ylabel("bytes per send minus the body")
    extra.set_title("What the transport adds (UTF-8 at the same byte count: hollow)")
    return _save(fig, path)


#: The panels of the ladder figure: (ladder field, axis label).
LADDER_PANELS = (
    ("total_bytes", "bytes per send, both directions"),
    ("p50_us", "p50 latency (µs)"),
    ("server_cpu_us", "server CPU per send (µs)"),
    ("client_cpu_us", "client CPU per send (µs)"),
)


def ladder_plot(results: dict[str, Any], path: Path) -> Path | None:
    """Where the cost goes: one panel per figure of ``send``, a bar per rung of the ladder
    (the transports beside it after a gap, hatched), each step's delta written above the
    bar it leads to; the steps' causes are listed under the panels."""
    rungs = results.get("ladder") or ladder(results)
    if not rungs:
        return None
    palette = colours(results)
    independent = timed_independently(rungs)
    fig, axes = plt.subplots(1, len(LADDER_PANELS), figsize=(4.2 * len(LADDER_PANELS), 5.6))
    xs, gap = [], 0.0
    for i, r in enumerate(rungs):
        if not r["on_ladder"] and (i == 0 or rungs[i - 1]["on_ladder"]):
            gap += 0.6
        xs.append(i + gap)
    for ax, (metric, ylabel) in zip(axes, LADDER_PANELS, strict=True):
        for x, r in zip(xs, rungs, strict=True):
            value = r.get(metric)
            if value is None:
                continue
            ci = r.get(f"{metric}_ci")  # the 95 % interval over rounds, where timed
            ax.bar(
                x,
                value,
                width=0.7,
                color=palette.get(r["transport"], "black"),
                hatch=None if r["on_ladder"] else "//",
                edgecolor="white" if r["on_ladder"] else "black",
                yerr=None if not ci else [[max(value - ci[0], 0)], [max(ci[1] - value, 0)]],
                capsize=4,
                ecolor="black",
            )
            delta = r.get(f"delta_{metric}")
            text = f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
            if delta is not None:
                text += f"\n({delta:+,.0f})" if abs(delta) >= 100 else f"\n({delta:+.1f})"
            ax.annotate(text, (x, value), ha="center", va="bottom", fontsize=7)
        if metric == "p50_us" and independent:  # the product's client on the rung, for scale
            # beside the bar's right edge, clear of its label
            chat = [(x + 0.42, r.get("chat_p50_us")) for x, r in zip(xs, rungs, strict=True)]
            chat = [(x, v) for x, v in chat if v is not None]
            if chat:
                ax.scatter(
                    [x for x, _ in chat],
                    [v for _, v in chat],
                    marker="D",
                    facecolors="none",
                    edgecolors="black",
                    s=22,
                    zorder=3,
                    label="ChatClient (asyncio)",
                )
                ax.legend(fontsize=7, loc="upper left")
        ticks = [f"{r['label']}\n({r['transport']})" for r in rungs]
        ax.set_xticks(xs, ticks, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.2)
        ax.grid(True, axis="y", alpha=0.3)
    steps = [
        f"{r['from']} → {r['transport']}: {r['isolates']}"
        for r in rungs
        if r["from"] is not None and r["isolates"]
    ]
    timed = (
        "\ntimed by each rung's independent blocking client; ◇: the product's ChatClient"
        if independent
        else ""
    )
    fig.suptitle(
        "Where the cost of a 32 B send goes, rung by rung (delta from the rung before; "
        f"whiskers: 95 % interval over rounds{timed})"
    )
    fig.text(0.01, 0.01, "\n".join(steps), fontsize=8, va="bottom", ha="left")
    fig.tight_layout(rect=(0, 0.04 * max(1, len(steps)), 1, 0.95))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def trend_plot(
    results: dict[str, Any], path: Path, *, history_path: Path | None = None
) -> Path | None:
    """The committed reference runs in order (bench/trend.py), one position per run labelled
    with its date and commit: each transport's send p50 (reference rows: echo) with its 95 %
    interval, and its steady send bytes; the run being reported comes last, hollow, when it
    is not in the history itself."""
    from bench.trend import HISTORY, entry, load_history

    if not results.get("latency"):
        return None  # nothing measured in this run
    runs = load_history(history_path or HISTORY)
    mine = entry(results)
    extra = not any(r.get("started_at") == mine["started_at"] for r in runs)
    points = [*runs, mine] if extra else runs
    if not points:
        return None
    _style = _styler(results)
    fig, (lat, size) = plt.subplots(1, 2, figsize=(13, 5.6))
    names = list(dict.fromkeys(n for r in points for n in r.get("figures", {})))
    for name in names:
        style = _style(name)
        mine_at = [
            (i, r["figures"][name]) for i, r in enumerate(runs) if name in r.get("figures", {})
        ]
        if mine_at:
            xs = [i for i, _ in mine_at]
            ys = [f["p50_us"] for _, f in mine_at]
            cis = [f.get("p50_ci") or [y, y] for y, (_, f) in zip(ys, mine_at, strict=True)]
            err = [
                [y - ci[0] for y, ci in zip(ys, cis, strict=True)],
                [ci[1] - y for y, ci in zip(ys, cis, strict=True)],
            ]
            lat.errorbar(xs, ys, yerr=err, marker="o", capsize=3, **style)
            sized = [(i, f["bytes"]) for i, f in mine_at if f.get("bytes") is not None]
            if sized:
                size.plot([i for i, _ in sized], [b for _, b in sized], marker="o", **style)
        now = mine["figures"].get(name) if extra else None
        if now is not None:
            hollow = {"color": style["color"], "marker": "o", "fillstyle": "none", "ls": ""}
            lat.plot([len(runs)], [now["p50_us"]], markersize=9, **hollow)
            if now.get("bytes") is not None:
                size.plot([len(runs)], [now["bytes"]], markersize=9, **hollow)
    ticks = [
        f"{str(r.get('started_at'))[:10]}\n{str(r.get('git_commit'))[:7]} ({r.get('mode')})"
        for r in runs
    ]
    if extra:
        ticks.append("this run\n(not a reference)")
    for ax in (lat, size):
        ax.set_xticks(range(len(ticks)), ticks, fontsize=7)
        ax.set_xlim(-0.5, len(ticks) - 0.5)
        ax.grid(True, which="both", alpha=0.3)
    lat.set_yscale("log")
    lat.set_ylabel("32 B round trip p50 (µs, log), 95 % interval")
    lat.set_title("send p50 (reference rows: echo), reference run by run")
    size.set_ylabel("steady send, bytes both directions")
    size.set_title("bytes per send, reference run by run")
    size.margins(y=0.15)
    handles, labels = lat.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=7)
    fig.suptitle(f"Trend: {len(runs)} reference run(s) in reports/reference/history.json")
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


FIGURES: dict[str, Callable[[dict[str, Any], Path], Path | None]] = {
    "ladder.png": ladder_plot,
    "bytes_per_op.png": bytes_per_op,
    "bytes_vs_body.png": bytes_vs_body,
    "latency_spectrum.png": latency_spectrum,
    "load.png": load_curves,
    "cpu_per_op.png": cpu_per_op,
    "trend.png": trend_plot,
    "saturation.png": loadgen_scene.plot,  # issue 10's scenes draw their own figures
    "population.png": population.plot,
}


#: Processes that draw the figures at once: the measuring is over, so both vCPUs are free,
#: and the figures take seconds each (matplotlib's text layout), so this halves the wait.
DRAW_PROCESSES = 2
#: The longest the drawing processes may take for every figure together; past it they are
#: terminated and what is left is drawn here, one after the other.
DRAW_TIMEOUT_S = 300.0
#: What a drawing process reads: set once per process by ``_share`` (the pool's initializer).
_SHARED: dict[str, Any] = {}


def _share(results: dict[str, Any], out_dir: str) -> None:
    _SHARED.update(results=results, out_dir=out_dir)


def _draw_one(name: str) -> Path | None:
    """Draw one figure of ``_SHARED``'s results (in a drawing process, or in this one)."""
    try:
        return FIGURES[name](_SHARED["results"], Path(_SHARED["out_dir"]) / name)
    except Exception:
        log.exception("plot %s failed", name)
        plt.close("all")
        return None


def _draw_in_processes(
    results: dict[str, Any], out_dir: Path, names: list[str], processes: int
) -> dict[str, Path | None]:
    """The figures drawn by ``processes`` spawned processes; those not back within
    DRAW_TIMEOUT_S are missing from the answer (the processes are terminated).

    Spawned, never forked: the caller (a bench run, a test session) has threads of its own
    (grpc's, the store's, the password hasher's), and a forked child inherits whatever lock
    one of them held at that instant, so it can wait forever on a lock no thread will release.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    pool = context.Pool(processes, initializer=_share, initargs=(results, str(out_dir)))
    try:
        pending = {name: pool.apply_async(_draw_one, (name,)) for name in names}
        deadline = time.monotonic() + DRAW_TIMEOUT_S
        drawn: dict[str, Path | None] = {}
        for name, result in pending.items():
            try:
                drawn[name] = result.get(timeout=max(0.0, deadline - time.monotonic()))
            except multiprocessing.TimeoutError:
                log.warning("plot %s: the drawing process took over %.0f s", name, DRAW_TIMEOUT_S)
        pool.close()
        return drawn
    finally:
        pool.terminate()  # ends whatever is still drawing (nothing, when all came back)
        pool.join()


def draw_all(
    results: dict[str, Any], out_dir: Path, *, processes: int = DRAW_PROCESSES
) -> list[Path]:
    """Every figure the results have data for, in FIGURES order, drawn by ``processes``
    spawned processes at once (1: here, one after the other); a figure that fails is logged
    and skipped, and one whose process did not come back in time is drawn here."""
    names = list(FIGURES)
    drawn: dict[str, Path | None] = {}
    if processes > 1:
        drawn = _draw_in_processes(results, out_dir, names, processes)
    _share(results, str(out_dir))
    try:
        for name in names:
            if name not in drawn:
                drawn[name] = _draw_one(name)
    finally:
        _SHARED.clear()
    return [path for name in names if (path := drawn[name]) is not None]


__all__ = [
    "DRAW_PROCESSES",
    "ENGINE_LABELS",
    "FIGURES",
    "LADDER_PANELS",
    "PALETTE",
    "colours",
    "draw_all",
    "engine_label",
    "engine_of",
    "mixed_engines",
    "trend_plot",
]
