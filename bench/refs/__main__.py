"""``python -m bench.refs NAME [--host H] [--port P]``: run one reference server until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from bench.refs import REFS

log = logging.getLogger("bench.refs")


async def _serve_async(name: str, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if name == "tcp_echo":
        from bench.refs import tcp_echo

        server, bound = await tcp_echo.start(host, port)
        log.info("listening: %s %s:%d", name, host, bound)
        log.info("ready:")
        await stop.wait()
        server.close()
        await server.wait_closed()
    else:
        from bench.refs import grpc_echo

        gserver, bound = await grpc_echo.start(host, port)
        log.info("listening: %s %s:%d", name, host, bound)
        log.info("ready:")
        await stop.wait()
        await gserver.stop(grace=None)


def _serve_floor(host: str, port: int) -> None:
    from bench.refs import tcp_floor

    sock = tcp_floor.listen(host, port)
    log.info("listening: tcp_floor %s:%d", host, sock.getsockname()[1])
    log.info("ready:")
    # SIGTERM's default action ends the process; the daemon threads go with it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    tcp_floor.serve_forever(sock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.refs", description=__doc__)
    parser.add_argument("name", choices=REFS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.name == "tcp_floor":
        _serve_floor(args.host, args.port)
        return 0
    from wirechat.server import install_fast_loop

    install_fast_loop()
    asyncio.run(_serve_async(args.name, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
