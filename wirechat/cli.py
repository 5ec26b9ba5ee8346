"""``wirechat``: one command with subcommands (server, client, web, bench)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from core import DeletedSenderPolicy, HashCost


def _add_server(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("server", help="run the chat server (custom and/or gRPC listeners)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--custom-port", type=int, help="port of the custom binary protocol (0 = any)")
    p.add_argument("--grpc-port", type=int, help="port of the gRPC server (0 = any)")
    p.add_argument(
        "--db",
        default="wirechat.db",
        help="SQLite file (default wirechat.db), or :memory: for a store that keeps nothing",
    )
    p.add_argument(
        "--sync",
        default="NORMAL",
        choices=["NORMAL", "FULL"],
        help="SQLite synchronous mode: NORMAL survives kill -9, FULL also power loss",
    )
    p.add_argument(
        "--deleted-sender",
        default="purge",
        choices=[p.value for p in DeletedSenderPolicy],
        help="a deleted user's undelivered messages: purge them (default) or keep them",
    )
    p.add_argument(
        "--hash-cost",
        default="default",
        choices=[c.value for c in HashCost],
        help="argon2 cost; 'low' is for tests and benches only",
    )
    p.add_argument("--log-level", default="INFO")


def _add_client(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("client", help="interactive console client")
    p.add_argument("--transport", default="custom", help="custom or grpc")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7000)


def _add_delegated(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Subcommands whose options live with their code (kept light to import)."""
    from bench import cli as bench_cli
    from ui.web import cli as web_cli

    web_cli.add_arguments(sub.add_parser("web", help="run the Flask web UI (a chat client)"))
    bench_cli.add_arguments(sub.add_parser("bench", help="measure every transport; write reports/"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wirechat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_server(sub)
    _add_client(sub)
    _add_delegated(sub)
    return parser


def run_server(args: argparse.Namespace) -> int:
    from wirechat.server import ServerConfig, install_fast_loop, serve

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ports = {
        name: port
        for name, port in (("custom", args.custom_port), ("grpc", args.grpc_port))
        if port is not None
    }
    if not ports:
        print("wirechat server: give --custom-port and/or --grpc-port", file=sys.stderr)
        return 2
    config = ServerConfig(
        host=args.host,
        ports=ports,
        db=args.db,
        synchronous=args.sync,
        deleted_sender=DeletedSenderPolicy(args.deleted_sender),
        hash_cost=HashCost(args.hash_cost),
    )
    install_fast_loop()
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        logging.getLogger("wirechat.server").error("cannot start: %s", exc)
        return 1
    return 0


def run_client(args: argparse.Namespace) -> int:
    from ui.console import run_console

    try:
        return asyncio.run(run_console(args.transport, args.host, args.port))
    except KeyboardInterrupt:  # a second Ctrl-C while a request is in flight
        return 130


def run_web(args: argparse.Namespace) -> int:
    from ui.web import cli as web_cli

    return web_cli.run(args)


def run_bench(args: argparse.Namespace) -> int:
    from bench import cli as bench_cli

    return bench_cli.run(args)


COMMANDS = {"server": run_server, "client": run_client, "web": run_web, "bench": run_bench}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
