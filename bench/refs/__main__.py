"""``python -m bench.refs NAME [--host H] [--port P]``: run one reference server until SIGTERM.

``NAME`` is a module of this package. ``tcp_floor`` is the blocking floor (``listen`` and
``serve_forever``); every other reference provides ``async def start(host, port) -> (server,
bound_port)``, where ``server`` is stopped by ``await server.stop(None)`` (grpc.aio) or by
``close()`` and ``await wait_closed()`` (asyncio, websockets). A new reference is one module.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import logging
import signal
import sys
from typing import Any

log = logging.getLogger("bench.refs")

FLOOR = "tcp_floor"
#: Modules of this package that are not reference servers.
NOT_SERVERS = frozenset(
    {
        "__init__",
        "__main__",
        "clients",
        "hand_frames",
        "independent",
        "independent_aio",
        "lean_custom",
        "lean_load",
        "lean_population",
        "lean_population_ws",
        "lean_ws",
    }
)


def known(name: str) -> bool:
    """A reference server module of this name exists (without importing it)."""
    return name.isidentifier() and importlib.util.find_spec(f"bench.refs.{name}") is not None


async def _stop(server: Any) -> None:
    stop = getattr(server, "stop", None)
    if stop is not None:  # grpc.aio.Server
        await stop(None)
        return
    server.close()
    closed = server.wait_closed()
    if inspect.isawaitable(closed):
        await closed


async def _serve_async(name: str, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    module = importlib.import_module(f"bench.refs.{name}")
    server, bound = await module.start(host, port)
    log.info("listening: %s %s:%d", name, host, bound)
    log.info("ready:")
    await stop.wait()
    await _stop(server)


def _serve_floor(host: str, port: int) -> None:
    from bench.refs import tcp_floor

    sock = tcp_floor.listen(host, port)
    log.info("listening: %s %s:%d", FLOOR, host, sock.getsockname()[1])
    log.info("ready:")
    # SIGTERM's default action ends the process; the daemon threads go with it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    tcp_floor.serve_forever(sock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.refs", description=__doc__)
    parser.add_argument("name", help="the reference server (a module of bench/refs)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if not known(args.name) or args.name in NOT_SERVERS:
        parser.error(f"no reference server called {args.name!r} in bench/refs")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.name == FLOOR:
        _serve_floor(args.host, args.port)
        return 0
    # the event loop `wirechat server` runs on (wirechat.server.install_fast_loop), without
    # importing the chat core for it (0.25 s of CPU at every start of a reference server)
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve_async(args.name, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
