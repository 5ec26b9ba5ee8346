"""``wirechat client``: the console's entry point, the transport looked up in the registry.

Besides starting :class:`ui.console.Console`, this decides the process exit code and tells
the two ways Ctrl-C can arrive apart (at a prompt, or while a request is in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

from prompt_toolkit.patch_stdout import patch_stdout

from core.reconnect import Backoff
from transports import registry
from transports._tls import ClientTls
from ui.console import ClientFactory, Console, ServerUnreachable


async def run_console(
    transport: str,
    host: str,
    port: int,
    *,
    client_factory: ClientFactory | None = None,
    tls: ClientTls | None = None,
    reconnect_for: float | None = None,
) -> int:
    """The ``wirechat client`` entry point: run the console, return the process exit code.

    ``client_factory`` replaces the registry lookup (tests use the in-process loopback);
    ``tls``: speak TLS to the server, trusting what it names. ``reconnect_for``: seconds to
    keep reconnecting after a lost connection (None: core.reconnect's default).
    Exit codes: 0 when the person quits, 1 if the server cannot be reached, 2 for an unknown
    or unavailable transport.
    """
    if client_factory is None:
        try:
            module = registry.get(transport)
        except (ValueError, ImportError) as exc:
            print(f"wirechat client: {exc}", file=sys.stderr)
            return 2
        client_factory = lambda: module.open_client((host, port), tls=tls)  # noqa: E731
    backoff = None if reconnect_for is None else Backoff(give_up_after=reconnect_for)
    console = Console(
        client_factory, server=f"the {transport} server at {host}:{port}", backoff=backoff
    )
    with _noting_sigint() as interrupted:
        try:
            with patch_stdout():
                return await console.run()
        except ServerUnreachable as exc:
            # Outside patch_stdout, so the line reaches the real stderr with no prompt shown.
            print(f"wirechat client: {exc}", file=sys.stderr)
            return 1
        except asyncio.CancelledError:
            # Ctrl-C while no prompt was reading keys (a request in flight): asyncio.run
            # cancels us. The console's cleanup has run; leave as quietly as /quit does.
            # Any other cancellation is not ours to swallow.
            if not interrupted():
                raise
            print("Bye.")
            return 0


@contextlib.contextmanager
def _noting_sigint() -> Iterator[Callable[[], bool]]:
    """Note whether SIGINT arrived, still calling the handler asyncio.run installed.

    At a prompt, prompt_toolkit turns Ctrl-C into KeyboardInterrupt itself (and restores this
    handler afterwards); between prompts SIGINT reaches asyncio.run, which cancels the main
    task. This tells run_console the two cancellations apart.
    """
    seen = False
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: FrameType | None) -> None:
        nonlocal seen
        seen = True
        if callable(previous):
            previous(signum, frame)

    try:
        signal.signal(signal.SIGINT, note)
    except ValueError:  # not the main thread: SIGINT is not delivered here
        yield lambda: False
        return
    try:
        yield lambda: seen
    finally:
        signal.signal(signal.SIGINT, previous)


__all__ = ["run_console"]
