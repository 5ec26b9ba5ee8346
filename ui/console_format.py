"""What the console prints: pure functions from core values to text, no terminal needed.

Everything another user chose (a message body, a sender's name as the server reports it) goes
through :func:`clean` before it reaches the terminal: a chat peer must not be able to move the
cursor, retitle the window or reorder text with control characters or bidi overrides.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo

from core.types import AccountPage, Delivery, LoginResult, SendResult

# C0 and C1 controls except tab and newline, DEL, and the Unicode bidi embeddings, overrides
# and isolates (the "Trojan Source" characters), which reorder what a terminal shows.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

#: Width at which account listings wrap; names are at most 32 characters.
LIST_WIDTH = 78


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str) -> str:
    """``text`` with every character that could act on the terminal shown as an escape.

    CRLF and lone CR become newlines first, so a message typed on Windows prints normally.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNSAFE.sub(_escape, text)


def format_clock(sent_at_ms: int, *, now_ms: int | None = None, tz: tzinfo | None = None) -> str:
    """The local time of a server timestamp: ``14:03:22`` today, with the date otherwise.

    ``tz`` defaults to the machine's local zone; ``now_ms`` to the current time.
    """
    when = datetime.fromtimestamp(sent_at_ms / 1000, tz=UTC).astimezone(tz)
    now = (
        datetime.now(tz=UTC) if now_ms is None else datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    ).astimezone(tz)
    if when.date() == now.date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M:%S")


def format_delivery(
    delivery: Delivery, *, now_ms: int | None = None, tz: tzinfo | None = None
) -> str:
    """``[14:03:22] alice: hello``; the lines of a multi-line body align under the first."""
    head = f"[{format_clock(delivery.sent_at_ms, now_ms=now_ms, tz=tz)}] {clean(delivery.sender)}: "
    first, *rest = clean(delivery.body).split("\n")
    indent = " " * len(head)
    return "\n".join([head + first, *(indent + line for line in rest)])


def format_login(result: LoginResult, *, signed_up: bool) -> str:
    """The greeting after signup or login, with the number of messages that were waiting."""
    name = clean(result.username)
    if signed_up:
        return f"Welcome, {name}! Your account is created. Type /help for the commands."
    if result.pending == 0:
        waiting = "No messages were waiting for you."
    elif result.pending == 1:
        waiting = "1 message was waiting for you:"
    else:
        waiting = f"{result.pending} messages were waiting for you:"
    return f"Logged in as {name} (/help lists the commands). {waiting}"


def format_send_result(recipients: Sequence[str], result: SendResult) -> str | None:
    """What to say after a send: nothing when everyone exists, else who got nothing."""
    unknown = result.unknown_recipients
    if not unknown:
        return None
    names = ", ".join(clean(name) for name in unknown)
    noun = "account" if len(unknown) == 1 else "accounts"
    if len(unknown) >= len(set(recipients)):
        return f"Not sent: no {noun} named {names}."
    return f"Not delivered to {names}: no such {noun}; the others got it."


def format_accounts(pattern: str, page: AccountPage, first: int) -> str:
    """One page of a listing; ``first`` is the 1-based number of its first name."""
    shown = repr(clean(pattern))
    if not page.usernames:
        return f"No account matches {shown}." if first == 1 else f"No more accounts match {shown}."
    last = first + len(page.usernames) - 1
    head = f"Accounts matching {shown} ({first}-{last}):"
    body = textwrap.fill(
        "  ".join(clean(name) for name in page.usernames),
        width=LIST_WIDTH,
        initial_indent="  ",
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    tail = "\n  ... more follow: /more" if page.more else ""
    return f"{head}\n{body}{tail}"


def format_conversation(peers: Sequence[str]) -> str:
    """Who plain lines go to (the answer to ``/to``)."""
    if not peers:
        return "You are not talking to anyone yet: /msg NAMES TEXT or /to NAMES starts it."
    return f"Talking to {', '.join(clean(p) for p in peers)}: plain lines go to them."


def format_prompt(username: str, peers: Sequence[str]) -> str:
    """The input line's prompt: ``alice> `` or ``alice → bob,carol> ``."""
    if not peers:
        return f"{clean(username)}> "
    return f"{clean(username)} → {','.join(clean(p) for p in peers)}> "


def format_session_end(reason: str | None) -> str:
    """Why the chat stopped, when the server (not the user) ended it."""
    return f"The server ended your session: {clean(reason or 'the connection was lost')}."


__all__ = [
    "LIST_WIDTH",
    "clean",
    "format_accounts",
    "format_clock",
    "format_conversation",
    "format_delivery",
    "format_login",
    "format_prompt",
    "format_send_result",
    "format_session_end",
]
