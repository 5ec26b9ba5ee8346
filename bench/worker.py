"""``python -m bench.worker``: the client side of the bench, in its own (pinned) process.

Reads one JSON job per line on stdin, runs it on one uvloop event loop that lives as long as
the process (grpc.aio channels stay on the loop they were made on), and writes one JSON line
per job to stdout: ``{"result": [...rows]}`` or ``{"error": "..."}``. It exits at EOF.
Everything else it or the libraries print goes to stderr, so stdout stays a clean channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

log = logging.getLogger("bench.worker")

Handler = Callable[[dict[str, Any]], Awaitable[list[dict[str, Any]]]]

#: Jobs whose rows are timings, and so carry how busy the rest of the machine was.
TIMED = frozenset({"ops", "deliver", "echo", "lean", "independent", "load", "population", "tls"})


async def run_sizes(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Bytes on the wire per operation (bench/wire.py, the wire engineer's module)."""
    from bench import wire
    from bench.config import PLANS, WIRE_CHECK

    address = (job["address"][0], int(job["address"][1]))
    plan = WIRE_CHECK if job.get("check") else PLANS[job["plan"]].wire  # a round's re-check
    return list(await wire.measure_sizes(job["transport"], address, plan))


async def run_payload_sizes(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Custom body vs protobuf SerializeToString sizes (bench/payloads.py)."""
    from bench import payloads
    from bench.config import PLANS

    return payloads.payload_sizes(PLANS[job["plan"]].wire.body_sizes)


def _handlers() -> dict[str, Handler]:  # imported late: `python -m bench.worker` starts fast
    from bench import latency, load, population, tls_rows

    return {
        "ops": latency.run_ops,
        "deliver": latency.run_deliver,
        "echo": latency.run_echo,
        "lean": latency.run_lean,
        "independent": latency.run_independent,  # issue 8: stock-library clients, paired
        "load": load.run_load,
        "population": population.run_population,
        "tls": tls_rows.run_tls,  # issue 13: each wire transport in clear and over TLS
        "sizes": run_sizes,
        "payload_sizes": run_payload_sizes,
    }


async def serve(stdin: TextIO, out: TextIO) -> None:
    from bench.endpoints import CpuMeter

    handlers = _handlers()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            return
        job = json.loads(line)
        try:
            meter = CpuMeter(int(job.get("target", {}).get("server_pid") or os.getpid()))
            rows = await handlers[job["kind"]](job)
            machine = meter.elapsed()
            if job["kind"] in TIMED:  # rows without a meter of their own get the job's figures
                for row in rows:
                    for key in ("other_vcpus", "steal_vcpus"):
                        if row.get(key) is None:
                            row[key] = machine[key]
            answer: dict[str, Any] = {"result": rows}
        except Exception as exc:
            log.debug("job failed", exc_info=True)
            notes = "".join(f" ({note})" for note in getattr(exc, "__notes__", ()))
            answer = {
                "error": f"{type(exc).__name__}: {exc}{notes}\n{traceback.format_exc(limit=6)}"
            }
        out.write(json.dumps(answer) + "\n")
        out.flush()


def main() -> int:
    # Keep the protocol channel for ourselves; anything printed to fd 1 lands on stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from wirechat.server import install_fast_loop

    install_fast_loop()
    asyncio.run(serve(sys.stdin, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
