"""The trend: the committed reference runs over time, so a reader sees whether the project gets
faster or slower release by release.

Mechanism. ``reports/reference/`` holds the newest reference run (its REPORT.md, plots and
results.json) and ``reports/reference/history.json``, a list with one small entry per
reference run ever promoted, oldest first: when, which commit, how many rounds, and per
transport its send p50 (median over rounds, with its 95 % interval) and its steady send bytes
(both directions). ``make bench-reference`` runs the full bench and promotes it::

    python -m bench.trend promote reports/latest

which copies the run into ``reports/reference/`` and appends its entry (a run already in the
history is not added twice). Every report draws ``trend.png`` from the history, with the run
being reported as a hollow point when it is not in the history itself (a quick run is shown
but never promoted on its own: ``promote`` refuses anything but a full run unless ``--force``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "reports" / "reference"
HISTORY = REFERENCE / "history.json"


def _send_row(results: dict[str, Any], transport: str, op: str) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in results.get("latency", [])
            if r["transport"] == transport
            and r["op"] == op
            and r["store"] in ("memory", "none")
            and r["placement"] in ("cross", "unpinned")
            and not r.get("client")
        ),
        None,
    )


def _bytes(results: dict[str, Any], transport: str) -> int | None:
    row = next(
        (
            r
            for r in results.get("sizes", [])
            if r.get("transport") == transport
            and r.get("op") == "send"
            and r.get("phase") == "steady"
            and r.get("body_bytes") == 32
            and r.get("recipients", 1) == 1
            and r.get("text", "ascii") == "ascii"
        ),
        None,
    )
    if row is None:
        return None
    return int(row["c2s_bytes"]) + int(row["s2c_bytes"])


def entry(results: dict[str, Any]) -> dict[str, Any]:
    """The trend's entry of one run: per transport (and reference row) its 32 B round trip's
    p50 with its interval, and its steady send bytes."""
    meta = results.get("meta", {})
    info = {i["name"]: i for i in meta.get("registry", [])}
    names = [r["transport"] for r in results.get("latency", [])]
    figures: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names):
        op = "send" if name in info else "echo"
        if name in info and not info[name].get("wire"):
            continue  # loopback: no wire, no round trip to trend
        row = _send_row(results, name, op)
        if row is None or row.get("p50_us") is None:
            continue
        figures[name] = {
            "op": op,
            "p50_us": row["p50_us"],
            "p50_ci": (row.get("ci") or {}).get("p50_us"),
            "bytes": _bytes(results, name) if op == "send" else None,
        }
    return {
        "started_at": meta.get("started_at"),
        "git_commit": meta.get("git_commit"),
        "git_dirty": meta.get("git_dirty"),
        "mode": meta.get("mode"),
        "rounds": (meta.get("rounds") or {}).get("count", 1),
        "figures": figures,
    }


def load_history(path: Path = HISTORY) -> list[dict[str, Any]]:
    """The entries of the history file, oldest first ([] if there is none yet)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    return list(data.get("runs", [])) if isinstance(data, dict) else list(data)


def append(results: dict[str, Any], path: Path = HISTORY) -> bool:
    """Add a run's entry to the history (sorted by start time); False if it is already there."""
    runs = load_history(path)
    new = entry(results)
    if any(r.get("started_at") == new["started_at"] for r in runs):
        return False
    runs.append(new)
    runs.sort(key=lambda r: str(r.get("started_at")))
    doc = {
        "about": "One entry per committed reference run (bench/trend.py); trend.png draws it.",
        "runs": runs,
    }
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")
    return True


def promote(run_dir: Path, *, force: bool = False, reference: Path = REFERENCE) -> Path:
    """Make a run the committed reference: copy it into ``reference`` (replacing the last
    one's files, keeping the history), append it to the history and redraw trend.png."""
    run_dir = Path(run_dir).resolve()
    results = json.loads((run_dir / "results.json").read_text())
    mode = results.get("meta", {}).get("mode")
    if mode != "full" and not force:
        raise ValueError(f"{run_dir} is a {mode} run; only a full run becomes the reference")
    reference.mkdir(parents=True, exist_ok=True)
    history = reference / "history.json"
    for old in reference.iterdir():
        if old.name != history.name and old.is_file():
            old.unlink()
    for item in run_dir.iterdir():
        if item.is_file():
            shutil.copy2(item, reference / item.name)
    append(results, history)
    from bench.plots import trend_plot

    trend_plot(results, reference / "trend.png", history_path=history)
    return reference


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.trend promote RUN_DIR`` (``make bench-reference``) or ``add RUN_DIR``
    (append to the history only)."""
    parser = argparse.ArgumentParser(prog="python -m bench.trend", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("promote", help="copy a full run into reports/reference/ and add it")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--force", action="store_true", help="promote a quick run too")
    a = sub.add_parser("add", help="append a run to reports/reference/history.json only")
    a.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "promote":
            where = promote(args.run_dir, force=args.force)
            print(f"reference: {where} (history: {len(load_history(where / 'history.json'))} runs)")
        else:
            results = json.loads((Path(args.run_dir) / "results.json").read_text())
            added = append(results)
            print(f"history: {'added' if added else 'already there'} ({HISTORY})")
    except (OSError, ValueError) as exc:
        print(f"python -m bench.trend: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["HISTORY", "REFERENCE", "append", "entry", "load_history", "main", "promote"]
