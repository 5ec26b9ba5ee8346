"""What the console prints: pure functions from core values to text, no terminal needed.

Everything another user chose (a message body, a sender's name as the server reports it) goes
through :func:`clean` before it reaches the terminal: a chat peer must not be able to move the
cursor, retitle the window or reorder text with control characters or bidi overrides.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from datetime import tzinfo

from core.reconnect import GaveUp, Reconnecting, Resumed
from core.types import (
    AccountPage,
    ConversationPage,
    Delivery,
    HistoryPage,
    LoginResult,
    MessagesDeleted,
    Notice,
    ReadMarker,
    SendResult,
    SentCopy,
)
from ui import timefmt

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


def format_clock(sent_at_ms: int, *, tz: tzinfo | None = None) -> str:
    """A server timestamp with its date, in ``tz`` (default: this machine's zone):
    ``2026-11-28 14:03``, the format the web UI shows too (``ui.timefmt``)."""
    return timefmt.stamp(sent_at_ms, tz)


DELETED_MARK = " (deleted account)"


def _who(delivery: Delivery, me: str, mine: bool) -> str:
    if mine:
        return "you"
    return clean(delivery.sender) + (DELETED_MARK if delivery.sender_deleted else "")


def format_delivery(
    delivery: Delivery, *, me: str = "", mine: bool | None = None, tz: tzinfo | None = None
) -> str:
    """``[2026-11-28 14:03] #12 alice: hello``; a group message names the others
    (``alice → you, carol``), a deleted account is marked, the lines of a multi-line body
    align under the first. ``mine``: a message I sent (default: the sender is ``me``)."""
    if mine is None:
        mine = bool(me) and delivery.sender == me and not delivery.sender_deleted
    others = [p for p in delivery.participants if mine or p != delivery.sender]
    if mine:
        to = f" → {', '.join(clean(p) for p in others)}" if others else " → yourself"
    else:
        to = f" → you, {', '.join(clean(p) for p in others)}" if others else ""
    head = (
        f"[{format_clock(delivery.sent_at_ms, tz=tz)}] #{delivery.message_id} "
        f"{_who(delivery, me, mine)}{to}: "
    )
    first, *rest = clean(delivery.body).split("\n")
    indent = " " * len(head)
    return "\n".join([head + first, *(indent + line for line in rest)])


def format_notice(notice: Notice, *, me: str, tz: tzinfo | None = None) -> str:
    """A notice from the server: a message sent from another device (Rule 24), a
    conversation read on another device (Rule 22), messages deleted (Rule 23)."""
    if isinstance(notice, SentCopy):
        return format_delivery(notice.message, me=me, mine=True, tz=tz) + "  (another device)"
    if isinstance(notice, ReadMarker):
        left = f"{notice.unread} unread" if notice.unread else "nothing unread"
        return f"(conversation #{notice.conversation_id} was read on another device: {left})"
    if isinstance(notice, MessagesDeleted):
        ids = ", ".join(f"#{i}" for i in notice.message_ids)
        noun = "Message" if len(notice.message_ids) == 1 else "Messages"
        return f"({noun} {ids} deleted.)"
    raise TypeError(f"not a notice: {notice!r}")


def conversation_name(participants: Sequence[str], deleted: Sequence[str] = ()) -> str:
    """``bob, carol``; a deleted member is marked; nobody else: notes to yourself."""
    if not participants:
        return "notes to yourself"
    return ", ".join(clean(p) + (DELETED_MARK if p in deleted else "") for p in participants)


def format_history(page: HistoryPage, *, me: str, older: bool, tz: tzinfo | None = None) -> str:
    """A page of a conversation, oldest first; ``older``: it continues a previous page."""
    name = conversation_name(page.participants, page.deleted_participants)
    if not page.messages:
        if older:
            return f"No older messages with {name}."
        return f"No messages with {name} yet."
    number = f" (#{page.conversation_id})" if page.conversation_id else ""
    count = len(page.messages)
    what = "older message" if older else "last message"
    head = f"{'The ' if not older else ''}{count} {what}{'s' * (count != 1)} with {name}{number}:"
    lines = [head[:1].upper() + head[1:]]
    lines += [format_delivery(d, me=me, tz=tz) for d in reversed(page.messages)]
    if page.more:
        lines.append("  ... older messages: /more")
    if page.deleted_participants:
        lines.append(
            f"  {', '.join(clean(p) for p in page.deleted_participants)}: deleted account; "
            "the name may belong to someone else now, and replies here do not go to it."
        )
    return "\n".join(lines)


def format_conversations(
    page: ConversationPage, *, me: str, first: bool, tz: tzinfo | None = None
) -> str:
    """One page of conversations, most recent first, each with its #ID and unread count."""
    if not page.conversations:
        return "No conversations yet." if first else "No more conversations."
    lines = ["Conversations (newest first; /history #ID shows one):" if first else ""]
    for c in page.conversations:
        last = c.last_message
        unread = f"{c.unread} unread" if c.unread else ""
        preview = " ".join(clean(last.body).split())
        if len(preview) > 40:
            preview = preview[:39] + "…"
        who = _who(last, me, last.sender == me and not last.sender_deleted)
        lines.append(
            f"  #{c.conversation_id:<5} {conversation_name(c.participants, c.deleted_participants)}"
            f"  {unread:>9}  [{format_clock(last.sent_at_ms, tz=tz)}] {who}: {preview}"
        )
    if page.more:
        lines.append("  ... more follow: /more")
    return "\n".join(line for line in lines if line)


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


def format_reconnecting(change: Reconnecting) -> str:
    """One line per attempt while the connection is being restored."""
    delay = f"{change.delay:.1f} s"
    if change.attempt == 1:
        return (
            f"The connection to the server was lost ({clean(change.reason)}). "
            f"Reconnecting\u2026 (attempt 1, next in {delay})"
        )
    return f"Reconnecting\u2026 (attempt {change.attempt}, next in {delay}; {clean(change.reason)})"


def format_resumed(change: Resumed) -> str:
    """The session is back; the messages that waited follow this line."""
    if change.pending == 0:
        return "Reconnected; nothing is pending."
    return f"Reconnected; {change.pending} pending (shown below unless you saw them already)."


def format_gave_up(change: GaveUp) -> str:
    """The reconnection is over without the session."""
    if change.login_needed:
        return (
            f"Could not resume your session after the connection was lost: {clean(change.reason)}."
        )
    return f"Could not reconnect: {clean(change.reason)}."


__all__ = [
    "LIST_WIDTH",
    "clean",
    "conversation_name",
    "format_accounts",
    "format_clock",
    "format_conversation",
    "format_conversations",
    "format_delivery",
    "format_gave_up",
    "format_history",
    "format_login",
    "format_notice",
    "format_prompt",
    "format_reconnecting",
    "format_resumed",
    "format_send_result",
    "format_session_end",
]
