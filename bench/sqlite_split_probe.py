"""sqlite_split_probe: what the SQLite store's own work costs per send, in three parts
(issue 10 item 1: where the file store's extra server CPU per send goes).

No server and no sockets: one process opens a ``SqliteStore`` on a fresh file, signs up the
senders and one recipient, and stages ``groups`` groups of ``size`` sends the way the writer
does under the durable scene's load (core.sqlite_writer, core.sqlite_send): each group is
``BEGIN``, the store's send stager over the group (four senders' pipelines in a row, one
recipient), ``COMMIT``; every ``CHECKPOINT_EVERY`` commits the two checkpoint passes the
writer runs on its thread. It prints the process CPU per send of each part:

  * stage: the multi-row INSERTs into messages and pending (with their index entries) and
    the stager's Python around them;
  * commit: ``COMMIT``, i.e. writing the group's dirty pages to the WAL (two ``pwrite`` per
    page, a checksum per frame);
  * checkpoint: the two passes (on the server, a thread of its own on the same vCPU).

Variants (``--variant``, repeatable) run in alternation with the store as it is, each on
a fresh file, ``rounds`` pairs; the last lines give each variant's medians and the median
of its per-pair ratio of the total to the store's, with its interval (bench.stats). A
variant is ``pragma:<PRAGMA text>`` (run on the writer connection after it opens),
``page:<bytes>`` (the new file's page size) or ``drop-index`` (no
``messages_by_conversation``: what that index costs; history needs it).

    .venv/bin/python -m bench.sqlite_split_probe --rounds 7 \\
        --variant drop-index --variant "pragma:PRAGMA mmap_size=268435456"
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.stats import median_interval

PARTS = ("stage", "commit", "checkpoint")
BODY = "x" * 32
#: Senders whose pipelines fill a group (the durable scene's four connections).
SENDERS = 4


async def _run(args: argparse.Namespace, variant: str, path: str) -> dict[str, float]:
    from core.sqlite_send import Send
    from core.sqlite_store import SqliteStore
    from core.sqlite_writer import CHECKPOINT_EVERY

    if variant.startswith("page:"):  # (a new file's page size: set before its first table)
        fresh = sqlite3.connect(path)
        fresh.execute(f"PRAGMA page_size={int(variant.removeprefix('page:'))}")
        fresh.execute("VACUUM")
        fresh.close()
    store = SqliteStore(path)
    try:
        ids = [await store.create_account(f"u{i}", "hash", 1) for i in range(SENDERS + 1)]
        db = store._db  # (the writer connection: what the writer stages and commits on)
        if variant.startswith("pragma:"):
            db.execute(variant.removeprefix("pragma:"))
        elif variant == "drop-index":
            db.execute("DROP INDEX messages_by_conversation")
        stage = store._stage_sends
        recipient = (f"u{SENDERS}",)
        per = max(1, args.size // SENDERS)
        spent = dict.fromkeys(PARTS, 0.0)
        sends = 0
        for g in range(args.groups):
            group: list[Send] = [
                (ids[k], BODY, 1000 + g, recipient) for k in range(SENDERS) for _ in range(per)
            ]
            t0 = time.process_time()
            db.execute("BEGIN")
            stage(db, group)
            t1 = time.process_time()
            db.execute("COMMIT")
            t2 = time.process_time()
            spent["stage"] += t1 - t0
            spent["commit"] += t2 - t1
            sends += len(group)
            if (g + 1) % CHECKPOINT_EVERY == 0:
                store._wal_checkpoint()  # (the writer's two passes: core.sqlite_writer)
                store._wal_checkpoint()
                spent["checkpoint"] += time.process_time() - t2
        row = {part: 1e6 * cpu / sends for part, cpu in spent.items()}
        row["total"] = sum(row.values())
        return row
    finally:
        await store.close()


def _one(args: argparse.Namespace, variant: str) -> dict[str, float]:
    """One run in a child process pinned like the server (a fresh interpreter and file)."""
    command = [sys.executable, "-m", "bench.sqlite_split_probe", "--child", variant]
    command += ["--groups", str(args.groups), "--size", str(args.size)]
    pin = ["taskset", "-c", str(args.cpu)] if args.cpu >= 0 else []
    out = subprocess.run([*pin, *command], capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (item.split("=") for item in out.split())}


def main(args: argparse.Namespace) -> None:
    if args.child is not None:
        with tempfile.TemporaryDirectory(prefix="wirechat-split-") as tmp:
            row = asyncio.run(_run(args, args.child, os.path.join(tmp, "split.db")))
        print(" ".join(f"{k}={v:.4f}" for k, v in row.items()))
        return
    variants = ["", *args.variant]
    rows: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for i in range(args.rounds):
        for variant in variants if i % 2 == 0 else variants[::-1]:
            rows[variant].append(_one(args, variant))
    base = rows[""]
    for variant, got in rows.items():
        medians = {k: statistics.median(r[k] for r in got) for k in (*PARTS, "total")}
        ratios = [r["total"] / b["total"] for r, b in zip(got, base, strict=True)]
        interval: Any = median_interval(ratios) if variant else None
        bounds = f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
        print(
            f"{variant or 'as is':40s} "
            + " ".join(f"{k} {v:.3f}" for k, v in medians.items())
            + f" us/send; total / as is {statistics.median(ratios):.3f}{bounds}"
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--groups", type=int, default=3000)
    parser.add_argument("--size", type=int, default=64, help="sends per group")
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--cpu", type=int, default=1, help="vCPU to pin each run to (-1: none)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


__all__ = ["PARTS", "main", "parse"]


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
