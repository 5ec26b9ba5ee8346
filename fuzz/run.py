"""Run the coverage-guided fuzz targets under atheris (Google's libFuzzer for Python).

    python fuzz/run.py custom_codec [libFuzzer options] [CORPUS_DIR ...]
    python fuzz/run.py --all --seconds 600      # make fuzz: every target, 600 s each
    python fuzz/run.py --all --runs 20000 --seed 1   # CI: bounded, and the same inputs each run

One target: its codec modules (``transports``, ``core``) are imported under atheris'
instrumentation, then libFuzzer takes the remaining arguments as usual (``-runs=``,
``-max_total_time=``, corpus directories). ``--all`` runs each target in its own process with
a corpus seeded from the protocol documents' examples (a temporary directory unless
``--corpus DIR``, where each target keeps ``DIR/<target>`` between runs) and libFuzzer's
limits on time per input (``-timeout``) and memory (``-rss_limit_mb``); a failing input is
saved under ``--artifacts`` (``reports/fuzz/`` by default) and the exit status is non-zero.
Each run draws a new libFuzzer seed (a short CI run explores a little more each time), and each
target's line names it; ``--seed N`` starts from that seed again (PYTHONHASHSEED fixed too; a
codec's coverage that depends on time can still change the path). What makes a failure
reproducible is its input: a failing target prints every input it saved, base64 in the log, with
the command that replays it (``python fuzz/run.py TARGET FILE``), so a CI log is enough.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("custom_codec", "protobuf_tcp_codec", "websocket_messages")
#: Seconds one input may take before libFuzzer calls it a hang (a codec answers in micro-
#: seconds; this is generous for a shared, instrumented CPU).
INPUT_TIMEOUT = 10
#: Resident memory a target may reach: a codec holds at most one frame of < 100 KiB, so a
#: growing process is a leak or an unbounded buffer.
RSS_LIMIT_MB = 1024
#: Longest input libFuzzer makes: above the custom MAX_FRAME (96 KiB), so oversized and
#: multi-frame streams are tried.
MAX_LEN = 128 * 1024


def fuzz_one(target: str, libfuzzer_args: list[str]) -> None:
    """Import ``target`` under instrumentation and hand the process to libFuzzer."""
    import atheris  # type: ignore[import-untyped]

    sys.path.insert(0, str(HERE))
    with atheris.instrument_imports(include=["transports", "core"]):
        module = importlib.import_module(target)
    atheris.Setup([sys.argv[0], *libfuzzer_args], module.test_one_input)
    atheris.Fuzz()


def run_all(
    budget: list[str], corpus_root: Path | None, artifacts: Path, seed: int | None = None
) -> int:
    """Every target in its own process; returns the number that failed."""
    sys.path.insert(0, str(HERE))
    artifacts.mkdir(parents=True, exist_ok=True)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="wirechat-fuzz-") as scratch:
        for target in TARGETS:
            corpus = (corpus_root or Path(scratch)) / target
            corpus.mkdir(parents=True, exist_ok=True)
            for i, example in enumerate(importlib.import_module(target).seeds()):
                (corpus / f"seed-{i:03d}").write_bytes(example)
            args = [sys.executable, str(HERE / "run.py"), target, *budget]
            args += [f"-timeout={INPUT_TIMEOUT}", f"-rss_limit_mb={RSS_LIMIT_MB}"]
            args += [f"-max_len={MAX_LEN}", f"-artifact_prefix={artifacts}/{target}-"]
            args += ["-print_final_stats=1", str(corpus)]
            env = dict(os.environ)
            if seed is not None:  # (0 would be libFuzzer's "draw one")
                args.insert(3, f"-seed={seed}")
                env["PYTHONHASHSEED"] = "0"
            started = time.monotonic()
            done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
            took = time.monotonic() - started
            stats = [line for line in done.stderr.splitlines() if line.startswith("stat::")]
            runs = next(
                (ln.split(":")[-1].strip() for ln in stats if "number_of_executed" in ln), "?"
            )
            drawn = next(
                (ln.split(":")[-1].strip() for ln in done.stderr.splitlines() if "Seed:" in ln),
                "?",
            )
            verdict = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
            print(
                f"{target}: {verdict}, {runs} inputs in {took:.0f} s, seed {drawn}, corpus {corpus}"
            )
            if done.returncode != 0:
                failed += 1
                print("\n".join(done.stderr.splitlines()[-40:]), file=sys.stderr)
                _show_inputs(target, artifacts, since=started)
    return failed


#: The bytes of a saved input printed in the log (base64) at most: a codec's failing input is
#: usually tens of bytes; a longer one is cut, and its file is named.
SHOWN_BYTES = 8192


def _show_inputs(target: str, artifacts: Path, since: float) -> None:
    """Print the inputs libFuzzer saved for ``target`` in this run (crash-, timeout-, oom-...)."""
    cutoff = time.time() - (time.monotonic() - since) - 1
    for path in sorted(artifacts.glob(f"{target}-*")):
        if path.stat().st_mtime < cutoff:
            continue  # (an earlier run's)
        data = path.read_bytes()
        cut = "" if len(data) <= SHOWN_BYTES else f" (first {SHOWN_BYTES} of {len(data)} bytes)"
        print(f"{target}: saved input {path}{cut}; replay: python fuzz/run.py {target} FILE")
        print(f"  base64: {base64.b64encode(data[:SHOWN_BYTES]).decode()}")


def main(argv: list[str] | None = None) -> int:
    """The command line (module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TARGETS:
        fuzz_one(argv[0], argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", required=True, help="every target")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--seconds", type=int, help="fuzzing time per target")
    group.add_argument("--runs", type=int, help="inputs per target")
    parser.add_argument("--corpus", type=Path, help="keep each corpus in CORPUS/<target>")
    parser.add_argument("--artifacts", type=Path, default=Path("reports/fuzz"))
    parser.add_argument(
        "--seed", type=int, help="libFuzzer's seed, >= 1 (a run with it draws the same inputs)"
    )
    args = parser.parse_args(argv)
    if args.seed is not None and args.seed < 1:
        parser.error("--seed is at least 1 (libFuzzer reads 0 as: draw one)")
    budget = [f"-max_total_time={args.seconds}"] if args.seconds else [f"-runs={args.runs}"]
    return 1 if run_all(budget, args.corpus, args.artifacts.resolve(), args.seed) else 0


if __name__ == "__main__":
    sys.exit(main())
