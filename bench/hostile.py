"""The hostile scene (issue 14): every attack at once against a canary pair, measured.

    python -m bench.hostile [--scale 1] [--seconds 90] [--only ack,slow,...] [--out DIR]
    make soak SCALE=1

It starts a real server (``wirechat.launch.ServerProcess``: custom and gRPC listeners, a temp
directory, free ports, stopped by its pid), seeds the accounts the attacks need straight into
its database (through the ``core`` Store interface), then runs in separate processes:

  canary    two users on ``custom`` exchanging a message every ~20 ms (push latency, timed
            from the intended send time);
  relogin   the real user logging in again every few seconds from 127.0.0.1 while others
            guess its password (its own process, so no other worker's loop is in its time);
  flood     ~20,000 connections idle after HELLO, a share of them holding most of a
            maximum-size frame, from 127.0.0.2-254, in as many processes as descriptors need;
  attacks   an ACK flood (3,000 ACKs of 1,024 ids per round), 8 slow consumers sent 64 KiB
            bodies they never read, a 64 KiB message fanned out to 256 readers that never read,
            20 login guessers on the canary's account, list_accounts scans over many accounts
            (the server paces ACK ids and scans per connection, docs/LIMITS.md: a round of the
            ACK flood needs ~5 minutes and is reported cut off);
  storm     a storm of 1,000 simultaneous connects, a third into the window (its own process);
  grpc      sessions on gRPC sending to each other.

Every count scales with ``--scale``, the server's connection cap too (``--max-connections``
FULL_CAP x scale, so a scaled flood still fills it), and every attack stops at the end of the
window. The load average at the start and the end of the attacks is reported: the machine may
be shared, and above its CPU count the figures measure the sharing. A thread
samples the server's /proc status (RSS, its kernel-kept peak VmHWM, descriptors), each
process's CPU and its wait for a CPU, the machine's CPU by kind (the host's steal too), the
listen queue and the kernel's listen overflows (``Sampler``); the
server's log gives its collector pauses and its late loop iterations (``loop: lag N ms at
T``, wirechat.server.LoopLag), both counted inside the window. Afterwards
every recipient logs in again: each message the server acknowledged must have been seen live
or be pending. The report (``REPORT.md`` + ``results.json`` under ``reports/soak/<run>/``) gives
target / actual / PASS or MISS per check; an attack that still wins is reported, not fatal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import queue as queue_mod
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import meta
from bench.hostile_attacks import PASSWORD, run_worker
from bench.hostile_report import checks, write_report
from wirechat.launch import ServerProcess

ATTACKS = ("idle", "partial", "ack", "slow", "fanout", "guess", "scan", "storm", "grpc")
#: Connections one flood process holds at most (the hard descriptor limit here is 20,000 per
#: process; the rest is headroom for its own files).
FLOOD_PER_PROCESS = 9000
#: The server's connection cap the full-scale flood is sized against: this machine's
#: descriptor limit (20,000) minus the Guard's FD_RESERVE. A scaled scene scales the cap too
#: (``--max-connections``), so its flood still fills the cap, as the full one does.
FULL_CAP = 20_000 - 64


def make_plan(
    scale: float,
    seconds: float,
    only: set[str] = set(ATTACKS),  # noqa: B006 (never mutated)
    idle: int | None = None,
    login_cost: str = "default",
) -> dict[str, Any]:
    """Every count of the scene at ``scale`` (1 = issue 14's figures)."""

    def n(full: float, least: int = 1) -> int:
        return max(least, round(full * scale))

    on = only.__contains__
    total_idle = (idle if idle is not None else n(20_000, 20)) if on("idle") or on("partial") else 0
    processes = math.ceil(total_idle / FLOOD_PER_PROCESS) if total_idle else 0
    plan: dict[str, Any] = {
        "scale": scale,
        "seconds": seconds,
        "login_cost": login_cost,
        "canary_interval": 0.020,
        "relogin_every": 3.0,
        "flood_per_process": [
            total_idle // processes + (i < total_idle % processes) for i in range(processes)
        ],
        "partial_share": (0.25 if on("idle") else 1.0) if on("partial") else 0.0,
        "ack_rounds": 3 if on("ack") else 0,
        "ack_frames": n(3000, 10),
        "slow_consumers": 8 if on("slow") else 0,
        "slow_messages": n(400, 4),
        "fan_recipients": n(256, 4) if on("fanout") else 0,
        "fan_sends": n(10, 1) if on("fanout") else 0,
        "guessers": 20 if on("guess") else 0,
        "guesses_each": 10_000,
        "accounts": n(200_000, 500) if on("scan") else 0,
        "scan_in_flight": 4 if on("scan") else 0,
        "scan_calls": 100_000,
        "storm": n(1000, 20) if on("storm") else 0,
        "grpc_sessions": n(200, 4) if on("grpc") else 0,
        "grpc_rate": n(400, 10),
        # None: the server's own cap (its descriptor limit); scaled: FULL_CAP x scale
        "server_cap": None if scale >= 1 else n(FULL_CAP, 16),
    }
    if not plan["fan_recipients"]:
        plan["fan_sends"] = 0
    return plan


def _names(plan: dict[str, Any]) -> list[str]:
    """The accounts the scene's sessions use (``acct-*``, the scanned crowd, come apart)."""
    names = ["canary-a", "canary-b", "flooder", "slow-sender", "fan-sender", "scanner"]
    names += [f"slow-{i}" for i in range(plan["slow_consumers"])]
    names += [f"fan-{i:03d}" for i in range(plan["fan_recipients"])]
    names += [f"grpc-{i:04d}" for i in range(plan["grpc_sessions"])]
    return names


async def seed(db: Path, plan: dict[str, Any]) -> float:
    """Create every account of the scene in ``db``; returns the seconds it took. The account
    under attack (canary-a) gets a hash of ``plan["login_cost"]`` (default: the production
    cost, argon2id with 64 MiB, as a real account has), the others the tests' cost.

    The sessions' accounts go through the ``core`` Store interface. The crowd that
    ``list_accounts`` scans (200,000 at scale 1) is written in one SQLite transaction after
    the store created the schema: one ``create_account`` per name takes ~1-3 ms here (a
    commit each), which would be minutes."""
    from core.passwords import HashCost, make_hasher
    from core.store import open_store

    started = time.monotonic()
    cheap = make_hasher(HashCost.LOW).hash(PASSWORD)
    real = make_hasher(HashCost(plan["login_cost"])).hash(PASSWORD)
    store = open_store(db)
    now = int(time.time() * 1000)
    try:
        names = _names(plan)
        for start in range(0, len(names), 256):
            await asyncio.gather(*(
                store.create_account(name, real if name == "canary-a" else cheap, now)
                for name in names[start : start + 256]
            ))  # fmt: skip
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.executemany(
            "INSERT INTO accounts(username, password_hash, created_at_ms) VALUES (?, ?, ?)",
            ((f"acct-{i:06d}", cheap, now) for i in range(plan["accounts"])),
        )
    return time.monotonic() - started


def sched_ns(pid: int, main_only: bool = False) -> tuple[int, int] | None:
    """CPU time and time spent waiting for a CPU (runnable, not running), nanoseconds, of
    every thread of process ``pid`` (``/proc/<pid>/task/*/schedstat``), or with ``main_only``
    of its main thread only (the server's event loop); None if it is gone."""
    cpu = wait = 0
    try:
        tasks = [str(pid)] if main_only else os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            fields = Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()
        except OSError:
            if main_only:
                return None
            continue  # (a thread that ended)
        cpu += int(fields[0])
        wait += int(fields[1])
    return cpu, wait


def listen_overflows() -> tuple[int, int]:
    """The kernel's ListenOverflows and ListenDrops (TcpExt, /proc/net/netstat): connects
    dropped because a listen queue was full (this network namespace, every listener)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            row = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(row.get("ListenOverflows", 0)), int(row.get("ListenDrops", 0))
    return 0, 0


def listen_queue(port: int) -> int | None:
    """Connections waiting in the listen queue of ``port`` now (``ss``: Recv-Q of a LISTEN
    socket is its accept queue); None when ``ss`` cannot tell."""
    import subprocess

    try:
        out = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=2
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    queued = [int(line.split()[1]) for line in out.splitlines() if line.split()[1:2]]
    return sum(queued) if queued else None


class Sampler(threading.Thread):
    """Samples the server's /proc status every ``every`` seconds until stopped; with
    ``watch`` (name -> pid, the scene's processes, the server as "server") also each one's
    CPU and wait-for-CPU (``sched_ns``), the kernel's listen overflows and, with ``port``,
    that listener's accept queue: where a late canary message or login spent its time."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int, int, int]] = []  # (wall, rss kB, hwm kB, fds)
        self.watch: dict[str, int] = {"server": pid}
        self.port: int | None = None
        #: name -> [(wall, cpu ns, wait ns)]
        self.sched: dict[str, list[tuple[float, int, int]]] = {}
        #: (wall, ListenOverflows, ListenDrops, accept queue of ``port`` or None)
        self.listen: list[tuple[float, int, int, int | None]] = []
        self.machine: list[tuple[float, list[int]]] = []  # (wall, meta.machine_cpu())
        self.halt = threading.Event()

    def read_sched(self) -> None:
        """One sample of every watched process's CPU and wait, and of the listen queue."""
        now = time.time()
        for name, pid in list(self.watch.items()):
            got = sched_ns(pid)
            if got is not None:
                self.sched.setdefault(name, []).append((now, *got))
        got = sched_ns(self.pid, main_only=True)  # (the server's loop thread, of its total)
        if got is not None:
            self.sched.setdefault("server-loop", []).append((now, *got))
        with contextlib.suppress(OSError, ValueError):
            self.machine.append((now, meta.machine_cpu()))
            queued = listen_queue(self.port) if self.port is not None else None
            self.listen.append((now, *listen_overflows(), queued))

    def read(self) -> tuple[float, int, int, int] | None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        kb = {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM") if k in fields}
        return (time.time(), kb.get("VmRSS", 0), kb.get("VmHWM", 0), fds)

    def run(self) -> None:
        while not self.halt.wait(self.every):
            sample = self.read()
            if sample is not None:
                self.samples.append(sample)
            self.read_sched()

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server has used so far."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fd_limit(self) -> int | None:
        try:
            for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
                if line.startswith("Max open files"):
                    return int(line.split()[3])
        except (OSError, ValueError, IndexError):
            pass
        return None


async def verify(address: tuple[str, int], acked: dict[str, set[int]],
                 seen: dict[str, set[int]]) -> dict[str, Any]:  # fmt: skip
    """Log every recipient in again: each acknowledged id must have been seen or be pending."""
    from transports import registry

    gate = asyncio.Semaphore(16)
    lost: dict[str, list[int]] = {}  # recipient -> the first lost ids
    lost_count = 0
    problems: dict[str, str] = {}
    pending_total = 0

    async def check(name: str) -> None:
        nonlocal pending_total, lost_count
        async with gate:
            client = registry.get("custom").open_client(address)
            pending: set[int] = set()
            try:
                await client.connect()
                result = await asyncio.wait_for(client.login(name, PASSWORD), 60)
                for _ in range(result.pending):
                    pending.add((await client.next_message(timeout=30)).message_id)
            except Exception as exc:
                problems[name] = f"{type(exc).__name__}: {exc}"
                return  # (unchecked, not lost: reported apart)
            finally:
                await client.close()
            pending_total += len(pending)
            missing = acked[name] - seen.get(name, set()) - pending
            if missing:
                lost[name] = sorted(missing)[:20]
                lost_count += len(missing)

    await asyncio.gather(*(check(name) for name in sorted(acked) if acked[name]))
    return {
        "recipients": sum(1 for ids in acked.values() if ids),
        "acknowledged": sum(len(ids) for ids in acked.values()),
        "pending_after": pending_total,
        "lost": {name: ids for name, ids in lost.items()},
        "lost_count": lost_count,
        "could_not_check": problems,
    }


def _collect(q: Any, want: set[str], deadline: float, results: dict[str, Any],
             failed: dict[str, str]) -> None:  # fmt: skip
    """Take ``ready``/``result``/``failed`` messages until every name in ``want`` answered."""
    while want and time.monotonic() < deadline:
        try:
            kind, name, *rest = q.get(timeout=1.0)
        except queue_mod.Empty:
            continue
        if kind == "failed":
            failed[name] = rest[0]
        elif kind == "result":
            results[name] = rest[0]
        want.discard(name)


def run(plan: dict[str, Any], out: Path, baseline: float = 3.0, cooldown: float = 5.0) -> dict:
    """Run the scene once; write the report under ``out``; return the results."""
    out.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    transports = ["custom"] + (["grpc"] if plan["grpc_sessions"] else [])
    results: dict[str, Any] = {
        "plan": plan,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python -m bench.hostile", *sys.argv[1:]]),
    }
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="wirechat-soak-") as tmp:
        db = Path(tmp) / "soak.db"
        results["seed_seconds"] = asyncio.run(seed(db, plan))
        cap = plan.get("server_cap")
        extra = ["--max-connections", str(cap)] if cap else []
        server = ServerProcess(transports, db, extra_args=extra).start()
        results["t_server"] = time.time()
        results["addresses"] = server.addresses
        sampler = Sampler(server.pid)
        sampler.start()
        q, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
        kinds = [("canary", 0)]
        kinds += [("flood", i) for i in range(len(plan["flood_per_process"]))]
        kinds += [("attacks", 0), ("relogin", 0)]
        kinds += [("storm", 0)] if plan["storm"] else []
        kinds += [("grpc", 0)] if plan["grpc_sessions"] else []
        procs = [
            ctx.Process(target=run_worker, args=(k, plan, server.addresses, q, go, stop, i))
            for k, i in kinds
        ]
        names = {k if k != "flood" else f"flood-{i}" for k, i in kinds}
        sampler.port = server.addresses["custom"][1]
        try:
            for proc in procs:
                proc.start()
            for (kind, i), proc in zip(kinds, procs, strict=True):
                if proc.pid is not None:  # (its CPU and its wait for a CPU: the Sampler)
                    sampler.watch[kind if kind != "flood" else f"flood-{i}"] = proc.pid
            ready: dict[str, Any] = {}
            _collect(q, set(names), time.monotonic() + 300, ready, failed)
            results["t_ready"] = time.time()
            time.sleep(baseline)  # the canary's quiet baseline
            results["t_go"] = time.time()
            results["load_at_go"] = os.getloadavg()  # (the machine is shared: say how busy)
            go.set()
            attackers = names - {"canary", "relogin"} - set(failed)
            deadline = time.monotonic() + plan["seconds"] + 180
            _collect(q, attackers, deadline, results, failed)
            results["t_end"] = time.time()
            results["load_at_end"] = os.getloadavg()
            time.sleep(cooldown)
            stop.set()
            _collect(
                q, {"canary", "relogin"} - set(failed), time.monotonic() + 120, results, failed
            )
            results["t_done"] = time.time()
            results["crashed"] = server.proc is not None and server.proc.poll() is not None
            if not results["crashed"]:
                acked, seen = _merge(results)
                results["verify"] = asyncio.run(verify(server.addresses["custom"], acked, seen))
        finally:
            stop.set()
            go.set()
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()  # (a worker of ours, by its pid)
                    proc.join(timeout=10)
            sampler.halt.set()
            sampler.join()
            last = sampler.read()
            if last is not None:
                sampler.samples.append(last)
            results["fd_limit"] = sampler.fd_limit()
            results["server_cpu_seconds"] = sampler.cpu_seconds()
            results["exit_code"] = server.stop()
        results["failed_workers"] = failed
        results["samples"] = sampler.samples
        results["sched"] = sampler.sched
        results["listen"] = sampler.listen
        results["machine_cpu"] = sampler.machine
        results["server_log_errors"] = [
            line for line in server.log_lines if "Traceback" in line or " ERROR " in line
        ][:50]
        results["gc"] = gc_pauses(server.log_lines)
        results["loop"] = loop_lags(server.log_lines)
        results["owner_checks"] = owner_checks(server.log_lines)
    results["checks"] = checks(results)
    write_report(results, out)
    return results


_GC_PAUSE = re.compile(r"gc: generation (\d) took ([\d.]+) ms at ([\d.]+) \(cpu ([\d.]+) ms")


def gc_pauses(log_lines: list[str]) -> dict[str, Any]:
    """The server's garbage-collector pauses from its log (``wirechat.gc_policy.GcWatch``):
    each long one as (wall time, generation, ms, CPU ms), and its closing summary line."""
    pauses = []
    summary = ""
    for line in log_lines:
        match = _GC_PAUSE.search(line)
        if match:
            pauses.append((float(match[3]), int(match[1]), float(match[2]), float(match[4])))
        elif "gc: summary" in line:
            summary = line.split("gc: summary", 1)[1].strip()
    return {"pauses": pauses, "summary": summary}


_LOOP_LAG = re.compile(r"loop: lag ([\d.]+) ms at ([\d.]+)")


def loop_lags(log_lines: list[str]) -> dict[str, Any]:
    """The server's late loop iterations from its log (``wirechat.server.LoopLag``): each
    timer tick 20 ms or more late as (wall time, ms late), and its closing summary line."""
    lags = []
    summary = ""
    for line in log_lines:
        match = _LOOP_LAG.search(line)
        if match:
            lags.append((float(match[2]), float(match[1])))
        elif "loop: summary" in line:
            summary = line.split("loop: summary", 1)[1].strip()
    return {"lags": lags, "summary": summary}


_OWNER_CHECK = re.compile(
    r"password: a check of priority 0 waited ([\d.]+) ms .* ran ([\d.]+) ms at ([\d.]+)"
)


def owner_checks(log_lines: list[str]) -> list[tuple[float, float, float]]:
    """The owner's slow password checks from the server's log (``core.passwords``, 0.5 s or
    more): each as (wall time, ms waited for a worker, ms it ran until the loop saw it done)."""
    checks = []
    for line in log_lines:
        match = _OWNER_CHECK.search(line)
        if match:
            checks.append((float(match[3]), float(match[1]), float(match[2])))
    return checks


def _merge(results: dict[str, Any]) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """Every worker's acknowledged and seen ids, by recipient."""
    acked: dict[str, set[int]] = {}
    seen: dict[str, set[int]] = {}
    parts = [results.get("canary", {}), results.get("grpc", {})]
    attacks = results.get("attacks", {})
    parts += [attacks.get("slow_consumers", {}), attacks.get("fan_out", {})]
    for part in parts:
        for name, ids in part.get("acked", {}).items():
            acked.setdefault(name, set()).update(ids)
        for name, ids in part.get("seen", {}).items():
            seen.setdefault(name, set()).update(ids)
    return acked, seen


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.hostile``: run the scene, print the verdicts, write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="every count times this")
    parser.add_argument("--seconds", type=float, default=90.0, help="the attack window")
    parser.add_argument(
        "--only", default=",".join(ATTACKS), help=f"attacks to run, of: {', '.join(ATTACKS)}"
    )
    parser.add_argument("--idle", type=int, help="idle connections (default 20,000 x scale)")
    parser.add_argument(
        "--login-cost",
        choices=("default", "low"),
        default="default",
        help="password hash cost of the guessed account (default: production's)",
    )
    parser.add_argument("--out", type=Path, help="report directory (default reports/soak/<run>)")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the server and the workers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    only = {a.strip() for a in args.only.split(",") if a.strip()}
    unknown = only - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attacks: {', '.join(sorted(unknown))}")
    out = args.out or Path("reports/soak") / time.strftime("%Y%m%d-%H%M%S")
    results = run(make_plan(args.scale, args.seconds, only, args.idle, args.login_cost), out)
    for check in results["checks"]:
        print(
            f"{check['verdict']:<5} {check['name']}: {check['actual']} (target {check['target']})"
        )
    print(f"report: {out / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
