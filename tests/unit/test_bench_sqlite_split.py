"""bench/sqlite_split_probe.py: the store's own work per send, in its parts."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from bench import sqlite_split_probe


def test_one_run_gives_each_part_per_send(tmp_path: Path) -> None:
    args = sqlite_split_probe.parse(["--groups", "260", "--size", "8"])
    row = asyncio.run(sqlite_split_probe._run(args, "", str(tmp_path / "a.db")))
    assert set(row) == {*sqlite_split_probe.PARTS, "total"}
    assert row["stage"] > 0 and row["commit"] > 0
    assert row["checkpoint"] > 0  # (260 commits: the passes after the 256th ran)
    assert abs(row["total"] - sum(row[p] for p in sqlite_split_probe.PARTS)) < 1e-9


def test_variants_apply_to_the_writer_connection(tmp_path: Path) -> None:
    args = sqlite_split_probe.parse(["--groups", "4", "--size", "4"])
    path = str(tmp_path / "b.db")
    assert asyncio.run(sqlite_split_probe._run(args, "drop-index", path))["total"] > 0
    db = sqlite3.connect(path)
    try:
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        (count,) = db.execute("SELECT count(*) FROM messages").fetchone()
    finally:
        db.close()
    assert "messages_by_conversation" not in indexes
    assert count == 4 * 4
    row = asyncio.run(
        sqlite_split_probe._run(args, "pragma:PRAGMA cache_size=-4096", str(tmp_path / "c.db"))
    )
    assert row["total"] > 0
    path = str(tmp_path / "d.db")
    assert asyncio.run(sqlite_split_probe._run(args, "page:2048", path))["total"] > 0
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA page_size").fetchone() == (2048,)
    finally:
        db.close()
