"""``wirechat``: one command with subcommands (server, client, web, bench)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from core import DeletedSenderPolicy, HashCost
from core.types import Retention
from transports._guard import ServerLimits
from transports._tls import ClientTls, ServerTls


def _add_server(sub: argparse._SubParsersAction) -> None:
    from transports import registry

    wire = [e for e in registry.ENTRIES if e.name in registry.WIRE_TRANSPORTS]
    listeners = "\n".join(
        f"  {e.name:<13} {e.summary} (default port {e.default_port})" for e in wire
    )
    p = sub.add_parser(
        "server",
        help="run the chat server: one process, one loop, a listener per transport",
        description="Serve one chat core through the listeners asked for.\n\n"
        f"Transports (--listen NAME=PORT):\n{listeners}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="serve transport NAME on PORT (0 = any free port); repeat for more; "
        "'all' serves every transport on its default port",
    )
    for e in wire:
        p.add_argument(
            f"--{e.name}-port", type=int, metavar="PORT", help=f"same as --listen {e.name}=PORT"
        )
    p.add_argument(
        "--db",
        "--store",
        dest="db",
        default="wirechat.db",
        help="SQLite file (default wirechat.db), :memory: for a store that keeps nothing, or"
        " postgresql://user@host:port/dbname for PostgreSQL (several nodes may share it)",
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
    p.add_argument(
        "--retention-messages",
        type=int,
        metavar="N",
        help="keep at most N messages of history per user (default: no limit); "
        "a message still undelivered is never dropped",
    )
    p.add_argument(
        "--retention-days",
        type=float,
        metavar="DAYS",
        help="drop history older than DAYS (default: keep it); undelivered messages stay",
    )
    limits = ServerLimits()
    p.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="open connections on all listeners together (default: what the descriptor "
        "limit allows)",
    )
    p.add_argument(
        "--max-connections-per-address",
        type=int,
        metavar="N",
        default=limits.max_connections_per_address,
        help="open connections from one client IP (default %(default)s)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        default=limits.idle_timeout,
        help="close a connection that has no logged-in session for this long (default %(default)s)",
    )
    p.add_argument(
        "--ack-ids-per-second",
        type=float,
        metavar="N",
        default=limits.ack_ids_per_second,
        help="message ids one session may acknowledge per second, on any transport; more wait "
        "(default %(default)g)",
    )
    p.add_argument(
        "--list-accounts-share",
        type=float,
        metavar="SECONDS",
        default=limits.list_accounts_share,
        help="seconds of account-search work one session may use per second; a search "
        "past it waits (default %(default)g)",
    )
    p.add_argument(
        "--shed-lag",
        type=float,
        metavar="SECONDS",
        default=limits.shed_lag,
        help="how late the server may run before it refuses new work that can wait (account "
        "searches; on gRPC every request that creates work) as overloaded (default %(default)g)",
    )
    p.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve every listener over TLS with this certificate chain (PEM); needs --tls-key",
    )
    p.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow serving in clear on an address other than the loopback (without it, "
        "such a server refuses to start without --tls-cert)",
    )
    p.add_argument(
        "--bus",
        default="",
        metavar="nats://HOST:PORT",
        help="run as a node of a cluster: a NATS server carries pushes to the nodes that hold "
        "the recipients' sessions (needs --db postgresql://..., shared by every node)",
    )
    p.add_argument("--node-name", default="", help="this node's name on the bus (default host-pid)")
    p.add_argument(
        "--sweep-interval",
        type=float,
        metavar="SECONDS",
        help="with --bus: how often a node checks the database for pushes the bus lost "
        "(default 1.0)",
    )
    p.add_argument("--log-level", default="INFO")


def add_client_tls(p: argparse.ArgumentParser) -> None:
    """``--tls`` and ``--ca`` for a program that connects to the chat server."""
    p.add_argument(
        "--tls", action="store_true", help="speak TLS to the chat server (a --tls-cert server)"
    )
    p.add_argument(
        "--ca",
        metavar="FILE",
        help="trust the server certificates this CA (PEM) signed, instead of the system's "
        "authorities (implies --tls)",
    )


def client_tls(args: argparse.Namespace) -> ClientTls | None:
    """The client's TLS settings from ``--tls``/``--ca`` (None: in clear)."""
    if not (args.tls or args.ca):
        return None
    return ClientTls(ca_file=args.ca)


def server_tls(args: argparse.Namespace) -> ServerTls | None:
    """The server's TLS settings from ``--tls-cert``/``--tls-key`` (ValueError if half given
    or unusable)."""
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("TLS needs both --tls-cert FILE and --tls-key FILE")
    tls = ServerTls(args.tls_cert, args.tls_key)
    tls.context()  # TlsSetupError (a ValueError) now, with the file's name, not at first bind
    return tls


def _add_client(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="interactive console client")
    from transports import registry

    p.add_argument(
        "--transport",
        default="custom",
        choices=registry.WIRE_TRANSPORTS,
        help="which transport to speak (default custom)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port",
        type=int,
        help="the server's port for --transport (default: the port `make server` uses for it)",
    )
    p.add_argument(
        "--reconnect-for",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="after a lost connection, keep trying to reconnect and resume the session for "
        "this long before going back to the login prompt (default 300; 0: do not retry)",
    )
    add_client_tls(p)


#: Subcommands contributed by other packages (the web UI, the bench) through this entry point
#: group in pyproject.toml. Each names a module with ``add_arguments(parser)`` and ``run(args)``;
#: its ``SUMMARY`` is the help line. The ``wirechat`` package imports none of them:
#: the bench depends on wirechat (it starts servers), never the other way round.
PLUGIN_GROUP = "wirechat.commands"


def _plugins() -> dict[str, ModuleType]:
    from importlib.metadata import entry_points  # scanning installed packages takes a while

    found = {}
    for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        found[point.name] = point.load()
    return found


def _add_plugins(sub: argparse._SubParsersAction) -> None:
    for name, module in _plugins().items():
        module.add_arguments(sub.add_parser(name, help=getattr(module, "SUMMARY", None)))


def _add_transports(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("transports", help="list the transports, their default ports and contracts")


def build_parser(*, plugins: bool = True) -> argparse.ArgumentParser:
    """The ``wirechat`` parser; ``plugins=False`` leaves out the subcommands of other
    packages (then ``--help`` does not list them)."""
    parser = argparse.ArgumentParser(prog="wirechat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_server(sub)
    _add_client(sub)
    _add_transports(sub)
    if plugins:
        _add_plugins(sub)
    return parser


def run_server(args: argparse.Namespace) -> int:
    from wirechat.server import InsecureBind, ServerConfig, check_exposure, install_fast_loop, serve

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        ports = listeners(args)
    except ValueError as exc:
        print(f"wirechat server: {exc}", file=sys.stderr)
        return 2
    try:
        retention = Retention(args.retention_messages, args.retention_days)
        tls = server_tls(args)
    except ValueError as exc:
        print(f"wirechat server: {exc}", file=sys.stderr)
        return 2
    config = ServerConfig(
        retention=retention,
        host=args.host,
        ports=ports,
        db=args.db,
        synchronous=args.sync,
        deleted_sender=DeletedSenderPolicy(args.deleted_sender),
        hash_cost=HashCost(args.hash_cost),
        limits=ServerLimits(
            max_connections=args.max_connections,
            max_connections_per_address=args.max_connections_per_address,
            idle_timeout=args.idle_timeout,
            ack_ids_per_second=args.ack_ids_per_second,
            list_accounts_share=args.list_accounts_share,
            shed_lag=args.shed_lag,
        ),
        tls=tls,
        insecure=args.insecure,
        bus=args.bus,
        node_name=args.node_name,
        sweep_interval=args.sweep_interval,
    )
    if args.bus and not args.db.startswith(("postgresql://", "postgres://")):
        print(
            "wirechat server: --bus needs --db postgresql://... (every node shares one database)",
            file=sys.stderr,
        )
        return 2
    try:
        check_exposure(config)
    except InsecureBind as exc:
        print(f"wirechat server: {exc}", file=sys.stderr)
        return 2
    install_fast_loop()
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        logging.getLogger("wirechat.server").error("cannot start: %s", exc)
        return 1
    return 0


def listeners(args: argparse.Namespace) -> dict[str, int]:
    """Transport name -> port, from --listen NAME=PORT and the --NAME-port flags."""
    from transports import registry

    ports: dict[str, int] = {}
    for item in args.listen:
        if item == "all":
            for name in registry.WIRE_TRANSPORTS:
                port = registry.entry(name).default_port
                ports.setdefault(name, port if port is not None else 0)
            continue
        name, sep, port = item.partition("=")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"--listen takes NAME=PORT (a port 0-65535), not {item!r}")
        if name not in registry.WIRE_TRANSPORTS:
            raise ValueError(
                f"unknown transport {name!r}; choose from {', '.join(registry.WIRE_TRANSPORTS)}"
            )
        ports[name] = int(port)
    for name in registry.WIRE_TRANSPORTS:
        port = getattr(args, f"{name.replace('-', '_')}_port", None)
        if port is not None:
            ports[name] = port
    if not ports:
        raise ValueError("name at least one listener: --listen NAME=PORT (or --listen all)")
    return ports


def run_client(args: argparse.Namespace) -> int:
    from ui.console_main import run_console

    try:
        from transports import registry

        port = args.port if args.port is not None else registry.entry(args.transport).default_port
        assert port is not None  # every wire transport has a default port
        return asyncio.run(
            run_console(
                args.transport,
                args.host,
                port,
                tls=client_tls(args),
                reconnect_for=args.reconnect_for,
            )
        )
    except KeyboardInterrupt:  # a second Ctrl-C while a request is in flight
        return 130


def run_transports(args: argparse.Namespace) -> int:
    from transports import registry

    for e in registry.ENTRIES:
        if e.name in registry.TRANSPORTS:
            port = str(e.default_port or "-")
            print(
                f"{e.name:<13} {port:<6} {e.summary}" + (f"  [{e.contract}]" if e.contract else "")
            )
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "server": run_server,
    "client": run_client,
    "transports": run_transports,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A built-in command (the server the bench and the tests start dozens of times) does not
    # load the plugins: finding and importing them costs ~0.15 s of CPU per start.
    builtin = bool(argv) and argv[0] in COMMANDS
    args = build_parser(plugins=not builtin).parse_args(argv)
    command = COMMANDS.get(args.command)
    if command is None:
        return int(_plugins()[args.command].run(args))
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
