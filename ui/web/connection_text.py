"""The gateway's connection to the chat server, in a person's words: the open pages' status
line while it reconnects, and what a failed connection means."""

from __future__ import annotations

import errno

from core.reconnect import ConnectionChange, GaveUp, Reconnecting


def connection_status(change: ConnectionChange) -> tuple[str, str]:
    """The open pages' status line while the gateway restores its connection to the chat
    server: (state, sentence); state is "reconnecting", "resumed" or "gave-up"."""
    if isinstance(change, Reconnecting):
        return (
            "reconnecting",
            "The connection to the chat server was lost; reconnecting\u2026 "
            f"(attempt {change.attempt}, next in {change.delay:.1f} s)",
        )
    if isinstance(change, GaveUp):
        return "gave-up", f"Could not reconnect to the chat server: {change.reason}"
    waiting = "nothing was pending" if not change.pending else f"{change.pending} pending"
    return "resumed", f"Reconnected; {waiting}."


def unreachable(exc: BaseException) -> str:
    """What a failed connection to the chat server means, for a person. A transport's client
    raises ConnectionError with a sentence of its own when it recognised the problem (for
    example another protocol on that port); an OS error is put in plain words here."""
    code = getattr(exc, "errno", None)
    if code == errno.ECONNREFUSED:
        return (
            "cannot reach the chat server: nothing is listening at its address. "
            "Is it running (`make server`), and is the web gateway's --server right?"
        )
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT):
        return "cannot reach the chat server: its host does not answer. Check --server"
    if isinstance(exc, ConnectionError) and code is None and str(exc):
        return f"cannot reach the chat server: {exc}"
    return f"cannot reach the chat server ({exc})"


__all__ = ["connection_status", "unreachable"]
