"""Where the server's microseconds go: a py-spy CPU profile of each transport's server under a
steady ``send`` load, drawn as a flame graph (SVG) with a table of the frames that burn the
most time themselves (issue 10 item 2).

How. The server (``wirechat server``, one transport, memory store) is started pinned to the
server vCPU; a bench worker on the other vCPU runs a closed-loop ``send`` load (the load
scene's job: senders to one offline recipient). Once the load is warm, ``py-spy record``
attaches to the server's pid for ``seconds`` (sampling ``rate_hz`` times a second, Python
frames, idle threads left out, ``--nolineno``: one node per function) and writes the raw
collapsed stacks. py-spy pauses the process briefly at each sample, so the server runs a little
slower while it is watched; the proportions are what the picture is for.

Reading it. Self time is charged to the innermost *Python* frame: time inside a C extension or
the event loop's C code (uvloop, grpc's core, the kernel's socket calls) shows as the self
time of the Python function that called into it (``run_forever``, ``_read_ready``, ...).
Each frame's µs/op is its share of the samples times the server's CPU per send in the same window.

py-spy needs ptrace rights over the server (root here, or ``kernel.yama.ptrace_scope`` 0, or
``CAP_SYS_PTRACE``); without them the step fails with py-spy's own message.
"""

from __future__ import annotations

import collections
import html
import logging
import shutil
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.markdown import fmt_us, table

if TYPE_CHECKING:
    from bench.run_steps import Step
    from bench.runner import BenchRun

log = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclass(frozen=True)
class ProfilePlan:
    transports: tuple[str, ...] | None  # None: every wire transport of the run
    seconds: float  # py-spy's recording window
    rate_hz: int
    lead_s: float  # load running before py-spy attaches (warm paths, steady rate)


PROFILE_PLANS = {
    "full": ProfilePlan(None, 3.0, 200, 1.0),
    "quick": ProfilePlan(("custom",), 1.0, 200, 0.3),
    "tiny": ProfilePlan(("custom",), 0.5, 200, 0.3),
    "profile": ProfilePlan(None, 10.0, 250, 1.0),  # `make bench-profile`
}

#: The worker's accounts and warm-up take at most this long before the load runs.
MAX_SETUP_S = 3.0
#: The server counts as under load once it uses this share of a vCPU over one POLL_S.
BUSY, POLL_S = 0.3, 0.1
#: Stacks kept in results.json per transport: the heaviest, enough to draw every visible box.
MAX_STACKS = 600
#: Rows of the top-frames table per transport.
TOP = 8


def py_spy() -> str:
    """The py-spy executable beside this Python, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError(
            "py-spy is not installed: `.venv/bin/python -m pip install py-spy` (a dev "
            "dependency in pyproject.toml)"
        )
    return found


def parse_collapsed(text: str) -> dict[str, int]:
    """py-spy's raw output (``frame;frame;... count`` per line) as {stack: samples}."""
    stacks: dict[str, int] = collections.Counter()
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return dict(stacks)


def record(pid: int, seconds: float, rate_hz: int, out: Path) -> dict[str, int]:
    """Attach py-spy to ``pid`` for ``seconds``; the collapsed stacks it saw."""
    args = [py_spy(), "record", "-p", str(pid), "-d", str(max(1, round(seconds)))]
    args += ["-r", str(rate_hz), "-f", "raw", "--nolineno", "-o", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy could not record pid {pid}: {done.stderr.strip()[-400:]}")
    return parse_collapsed(out.read_text())


# -- measuring -------------------------------------------------------------------------------
def steps(run: BenchRun) -> list[Step]:
    """One step per profiled transport (each starts and stops its own server)."""
    from bench import run_phases
    from bench.run_steps import Step
    from transports import registry

    plan = PROFILE_PLANS.get(run.plan.mode, PROFILE_PLANS["quick"])
    wanted = plan.transports or tuple(t for t in run.chats if registry.entry(t).wire)
    return [
        Step(
            f"{t}: profile (py-spy)",
            _bind(run, t, plan),
            f"profile/{t}",
            phase=run_phases.PROFILES,
        )
        for t in wanted
        if t in run.chats
    ]


def _bind(run: BenchRun, transport: str, plan: ProfilePlan) -> Callable[[], None]:
    def step() -> None:
        profile_transport(run, transport, plan)

    return step


def profile_transport(run: Any, transport: str, plan: ProfilePlan) -> Row:
    """Profile one transport's server under a closed-loop send load; appends a profiles row.

    ``run``: the BenchRun (or anything with its ``main`` placement, ``plan``, ``body`` and
    ``results``)."""
    import tempfile

    from bench.procs import Worker
    from wirechat.launch import ServerProcess

    server = ServerProcess([transport], ":memory:", cpu=run.main.server_cpu).start()
    answer: dict[str, Any] = {}
    try:
        with Worker(cpu=run.main.client_cpu) as worker:
            job = {
                "kind": "load",
                "target": {
                    "kind": "chat",
                    "transport": transport,
                    "address": server.addresses[transport],
                    "server_pid": server.pid,
                },
                "mode": "closed",
                "connections": run.plan.connections,
                "depth": run.plan.depth,
                # the load's clock starts after its set-up and warm-up, which _wait_for_load
                # waits out (the warm-up already loads the server): lead, record, a margin
                "duration_s": plan.lead_s + plan.seconds + 1.0,
                "warmup": min(run.plan.load_warmup, 200),
                "body": run.body,
                "prefix": f"p{transport[:3]}",
            }

            def load() -> None:
                try:
                    answer["rows"] = worker.run(job, timeout=plan.seconds * 4 + 120)
                except Exception as exc:  # reported below, after py-spy is done
                    answer["error"] = exc

            thread = threading.Thread(target=load, daemon=True)
            thread.start()
            _wait_for_load(server.pid, MAX_SETUP_S)
            time.sleep(plan.lead_s)  # warm paths, a steady rate
            with tempfile.TemporaryDirectory(prefix="wirechat-flame-") as tmp:
                stacks = record(server.pid, plan.seconds, plan.rate_hz, Path(tmp) / "raw.txt")
            thread.join(plan.seconds * 4 + 130)
    finally:
        server.stop()
    if "error" in answer:
        raise answer["error"]
    load_row = (answer.get("rows") or [{}])[0]
    stacks, idle = split_idle(stacks)
    row = {
        "transport": transport,
        "store": "memory",
        "op": "send",
        "seconds": plan.seconds,
        "rate_hz": plan.rate_hz,
        "samples": sum(stacks.values()),
        "idle_samples": idle,
        "achieved_per_s": load_row.get("achieved_per_s"),
        "server_cpu_us_per_op": load_row.get("server_cpu_us_per_op"),
        "server_cpu_util": load_row.get("server_cpu_util"),
        "other_vcpus": load_row.get("other_vcpus"),
        "stacks": _heaviest(stacks, MAX_STACKS),
    }
    run.results.setdefault("profiles", []).append(row)
    return row


def _wait_for_load(pid: int, limit_s: float) -> None:
    """Return once the server is busy (the worker's accounts and warm-up are done and the
    load runs), or after ``limit_s``."""
    from bench.endpoints import process_cpu_s

    deadline = time.monotonic() + limit_s
    last = process_cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        now = process_cpu_s(pid)
        if now - last >= BUSY * POLL_S:
            return
        last = now


#: Innermost frames that are a thread waiting, not working: the event loop's executor thread
#: blocked on its work queue (the memory store's send path never uses it). py-spy's idle
#: detection misses this wait on a busy machine, so these samples are set aside and counted.
IDLE_LEAVES = ("_worker (concurrent/futures/thread.py)",)


def split_idle(stacks: dict[str, int]) -> tuple[dict[str, int], int]:
    """(stacks without the IDLE_LEAVES ones, samples set aside)."""
    kept = {k: n for k, n in stacks.items() if not k.endswith(IDLE_LEAVES)}
    return kept, sum(stacks.values()) - sum(kept.values())


def _heaviest(stacks: dict[str, int], keep: int) -> dict[str, int]:
    return dict(sorted(stacks.items(), key=lambda kv: -kv[1])[:keep])


# -- reading ---------------------------------------------------------------------------------
def self_time(stacks: dict[str, int]) -> list[tuple[str, int]]:
    """(frame, samples in which it was the innermost frame), heaviest first."""
    own: collections.Counter[str] = collections.Counter()
    for stack, n in stacks.items():
        own[stack.rsplit(";", 1)[-1]] += n
    return own.most_common()


#: Where a frame's file lives, for the "by area" column: first match wins.
AREAS = (
    ("core/", "core"),
    ("transports/", "transports"),
    ("wirechat/", "wirechat"),
    ("asyncio/", "asyncio"),
    ("uvloop", "uvloop"),
    ("grpc", "grpc"),
    ("google/protobuf", "protobuf"),
    ("websockets/", "websockets"),
    ("sqlite3", "sqlite"),
)


#: Frames whose self time is the event loop's own C code and the C extensions and system
#: calls it runs (uvloop, grpc's core): Python sees nothing below them.
LOOP_FRAMES = ("Runner.run ", "run_forever ", "BaseEventLoop.run_forever ", "Thread.run ")


def area(frame: str) -> str:
    """The package a ``function (path)`` frame belongs to (AREAS), else "other"."""
    if frame.startswith(LOOP_FRAMES):
        return "loop/C"
    where = frame[frame.rfind("(") + 1 :] if "(" in frame else frame
    return next((name for key, name in AREAS if key in where), "other")


def by_area(stacks: dict[str, int]) -> list[tuple[str, int]]:
    """Self samples summed per area, heaviest first."""
    totals: collections.Counter[str] = collections.Counter()
    for frame, n in self_time(stacks):
        totals[area(frame)] += n
    return totals.most_common()


def section(results: dict[str, Any], images: Sequence[str]) -> str:
    """REPORT.md: per transport, the flame graph's link and the top self-time frames."""
    rows = results.get("profiles") or []
    if not rows:
        return ""
    parts = [
        "## Where the server's time goes (CPU profile of `send`)\n",
        "Each transport's server (memory store) sampled by py-spy while a closed-loop `send` "
        "load runs against it; client and server pinned as elsewhere. *Self* time is charged "
        "to the innermost Python frame, so time in C (uvloop, grpc's core, socket system "
        "calls) shows as the self time of the Python frame that called it (area *loop/C* where "
        "that is the event loop itself). µs/op = share of "
        "the samples times the server's CPU per send in the same window; py-spy pauses the server "
        "at each sample, so it ran a little slower than in the load table.\n",
    ]
    for row in rows:
        stacks = row.get("stacks") or {}
        total = max(row.get("samples") or sum(stacks.values()), 1)
        per_op = row.get("server_cpu_us_per_op")
        name = f"flame_{row['transport']}.svg"
        link = f"[flame graph]({name})" if name in images else "(flame graph not drawn)"
        parts.append(
            f"\n### {row['transport']} — {link}\n\n{row['samples']} samples over "
            f"{row['seconds']} s at {row['rate_hz']} Hz; {fmt_us(row.get('achieved_per_s'))} "
            f"sends/s, server {fmt_us(per_op)} µs CPU per send; other work on the machine "
            f"{row.get('other_vcpus', '—')} vCPUs; {row.get('idle_samples', 0)} samples of "
            "the idle executor thread set aside. By area (self time): "
            + ", ".join(f"{a} {n / total:.0%}" for a, n in by_area(stacks)[:6])
            + ".\n"
        )
        top = [
            [
                f"`{frame.replace('|', '/')}`",
                f"{n / total:.1%}",
                fmt_us(None if per_op is None else per_op * n / total),
            ]
            for frame, n in self_time(stacks)[:TOP]
        ]
        parts.append(table(["frame (self time)", "share of samples", "µs per send"], top))
    return "\n".join(parts)


# -- drawing ---------------------------------------------------------------------------------
WIDTH = 1200
#: Boxes narrower than this many pixels are not drawn (their samples still count in parents).
MIN_PX = 0.3
ROW_PX = 17
FONT_PX = 11
#: Colours by area (AREAS), so our code stands out from the libraries'.
AREA_COLOURS = {
    "core": "#e8743b",
    "transports": "#f0a030",
    "wirechat": "#e05050",
    "asyncio": "#d9c84a",
    "uvloop": "#c9b83a",
    "grpc": "#6fa8dc",
    "protobuf": "#8fb8e8",
    "websockets": "#93c47d",
    "sqlite": "#b4a7d6",
    "loop/C": "#bbbbbb",
    "other": "#dddddd",
}


@dataclass
class _Node:
    name: str
    total: int = 0
    children: dict[str, _Node] | None = None


def _tree(stacks: dict[str, int]) -> _Node:
    root = _Node("all")
    for stack, n in stacks.items():
        node = root
        node.total += n
        for frame in stack.split(";"):
            if node.children is None:
                node.children = {}
            child = node.children.get(frame)
            if child is None:
                child = node.children[frame] = _Node(frame)
            child.total += n
            node = child
    return root


def flame_svg(stacks: dict[str, int], title: str) -> str:
    """A self-contained flame graph (root at the bottom), each box titled with its share."""
    root = _tree(stacks)
    total = max(root.total, 1)

    def depth_of(node: _Node) -> int:
        kids = [c for c in (node.children or {}).values() if WIDTH * c.total / total >= MIN_PX]
        return 1 + max((depth_of(c) for c in kids), default=0)

    height = depth_of(root) * ROW_PX + 50
    boxes: list[str] = []

    def draw(node: _Node, x: float, depth: int) -> None:
        width = WIDTH * node.total / total
        if width < MIN_PX:
            return
        boxes.append(_box(node, x, height - (depth + 1) * ROW_PX, width, total))
        for child in sorted((node.children or {}).values(), key=lambda c: c.name):
            draw(child, x, depth + 1)
            x += WIDTH * child.total / total

    draw(root, 0.0, 0)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="monospace" font-size="{FONT_PX}">\n'
        f'<rect width="100%" height="100%" fill="#fdfdfd"/>\n'
        f'<text x="6" y="16" font-size="13">{html.escape(title)}</text>\n'
        + _legend()
        + "\n".join(boxes)
        + "\n</svg>\n"
    )


def _legend() -> str:
    """One small box per area colour, under the title."""
    items, x = [], 6
    for name, colour in AREA_COLOURS.items():
        items.append(
            f'<rect x="{x}" y="24" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 13}" y="33">{name}</text>'
        )
        x += 13 + len(name) * 7 + 14
    return "".join(items) + "\n"


def _box(node: _Node, x: float, y: int, width: float, total: int) -> str:
    colour = AREA_COLOURS[area(node.name)] if node.name != "all" else "#999999"
    # a little variation within an area, stable per name, so neighbours are told apart
    shade = zlib.crc32(node.name.encode()) % 24 - 12
    label = node.name.split(" (")[0]
    chars = int(width / (FONT_PX * 0.62))
    text = label if len(label) <= chars else (label[: chars - 2] + ".." if chars > 3 else "")
    tip = f"{node.name} — {node.total} samples, {node.total / total:.1%}"
    return (
        f"<g><title>{html.escape(tip)}</title>"
        f'<rect x="{x:.2f}" y="{y}" width="{max(width - 0.5, 0.1):.2f}" height="{ROW_PX - 1}" '
        f'fill="{colour}" style="filter:brightness({100 + shade}%)"/>'
        f'<text x="{x + 3:.2f}" y="{y + ROW_PX - 5}">{html.escape(text)}</text></g>'
    )


def draw_flames(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """``flame_<transport>.svg`` for every profiled transport; the paths written."""
    written = []
    for row in results.get("profiles") or []:
        if not row.get("stacks"):
            continue
        path = Path(out_dir) / f"flame_{row['transport']}.svg"
        title = (
            f"wirechat server, {row['transport']}: send under closed-loop load — "
            f"{row['samples']} samples (py-spy, {row['rate_hz']} Hz); width = share of CPU samples"
        )
        path.write_text(flame_svg(row["stacks"], title))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.flame`` (``make bench-profile``): profile every wire transport, write
    the flame graphs and PROFILE.md under ``--out/<run-id>/``."""
    import argparse
    import json
    import types

    from bench.config import BODY_BYTES, QUICK, SEED, body
    from bench.procs import choose_placement
    from transports import registry

    parser = argparse.ArgumentParser(prog="python -m bench.flame", description=main.__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports/profile"))
    parser.add_argument("--seconds", type=float, default=PROFILE_PLANS["profile"].seconds)
    parser.add_argument("--transports", nargs="*", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    plan = ProfilePlan(None, args.seconds, PROFILE_PLANS["profile"].rate_hz, 1.0)
    placement, _ = choose_placement()
    run = types.SimpleNamespace(main=placement, plan=QUICK, body=body(SEED, BODY_BYTES), results={})
    wanted = args.transports or [e.name for e in registry.ENTRIES if e.wire]
    for transport in wanted:
        log.info("profiling %s for %.0f s", transport, plan.seconds)
        profile_transport(run, transport, plan)
    out = args.out / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    images = draw_flames(run.results, out)
    (out / "profiles.json").write_text(json.dumps(run.results, indent=1) + "\n")
    (out / "PROFILE.md").write_text(
        f"# wirechat server CPU profiles — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"\n\nCommand: `python -m bench.flame {' '.join(argv or sys.argv[1:])}`; server on "
        f"vCPU {placement.server_cpu}, load generator on vCPU {placement.client_cpu}.\n\n"
        + section(run.results, [p.name for p in images])
    )
    log.info("wrote %s", out / "PROFILE.md")
    return 0


__all__ = [
    "PROFILE_PLANS",
    "ProfilePlan",
    "by_area",
    "draw_flames",
    "flame_svg",
    "main",
    "parse_collapsed",
    "profile_transport",
    "record",
    "section",
    "self_time",
    "steps",
]


if __name__ == "__main__":
    sys.exit(main())
