"""The server's history as the pages show it: core values -> rows with labels and times.

The chat server keeps every user's history (Rules 20-25); the gateway keeps none. These pure
functions turn a :class:`core.types.HistoryPage`, :class:`Conversation` or :class:`Delivery`
into what a template renders and what the event stream sends as JSON (static/chat.js renders
the same fields with textContent). Times are formatted here, in the reader's time zone, by
``ui.timefmt``, the module the console uses too.

Identity (Rules 19, 25): a message from a deleted account says "<name> (deleted account)";
a conversation with a member whose account was deleted is addressed by its id only, because
the name may belong to someone else now, and a reply never goes to that name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo

from core.types import Conversation, ConversationPage, Delivery, HistoryPage
from ui import timefmt

#: Messages per history page (the thread shows one page, "Load older" fetches the next).
HISTORY_PAGE = 50
#: Conversations in the sidebar (and the unread total is counted over them).
SIDEBAR_PAGE = 200
#: Characters of the last message shown in the sidebar.
PREVIEW_CHARS = 120
DELETED_MARK = " (deleted account)"


def peer_key(participants: Sequence[str]) -> str:
    """The conversation's other participants as one attribute value: ``kim,lee``."""
    return ",".join(sorted(participants))


def label(participants: Sequence[str], deleted: Sequence[str] = ()) -> str:
    """``kim, lee``; a deleted member is marked; no one else: notes to yourself."""
    if not participants:
        return "Notes to self"
    return ", ".join(name + (DELETED_MARK if name in deleted else "") for name in participants)


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message as a thread shows it."""

    message_id: int
    conversation_id: int
    participants: tuple[str, ...]
    mine: bool
    who: str  # "You", "bob" or "bob (deleted account)"
    sender_deleted: bool
    to: str  # for my message to a group: "to kim, lee"; else ""
    body: str
    sent_at_ms: int
    time: str  # 14:03
    stamp: str  # 2026-11-28 14:03
    day: str  # 2026-11-28: the day separators compare these
    day_label: str  # Today / Yesterday / Sat 2026-11-28

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.message_id,
            "cid": self.conversation_id,
            "participants": list(self.participants),
            "mine": self.mine,
            "who": self.who,
            "sender_deleted": self.sender_deleted,
            "to": self.to,
            "body": self.body,
            "time": self.time,
            "stamp": self.stamp,
            "day": self.day,
            "day_label": self.day_label,
        }


def message_row(
    delivery: Delivery, me: str, tz: tzinfo, *, mine: bool | None = None, now_ms: int | None = None
) -> MessageRow:
    """A delivery as a row; ``mine`` defaults to "the sender is me and not a deleted one"."""
    if mine is None:
        mine = delivery.sender == me and not delivery.sender_deleted
    if mine:
        who = "You"
    else:
        who = delivery.sender + (DELETED_MARK if delivery.sender_deleted else "")
    to = ""
    if mine and len(delivery.participants) > 1:
        to = "to " + ", ".join(delivery.participants)
    ms = delivery.sent_at_ms
    return MessageRow(
        message_id=delivery.message_id,
        conversation_id=delivery.conversation_id,
        participants=tuple(sorted(delivery.participants)),
        mine=mine,
        who=who,
        sender_deleted=delivery.sender_deleted,
        to=to,
        body=delivery.body,
        sent_at_ms=ms,
        time=timefmt.clock(ms, tz),
        stamp=timefmt.stamp(ms, tz),
        day=timefmt.date(ms, tz),
        day_label=timefmt.day_label(ms, now_ms=now_ms, tz=tz),
    )


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """One conversation in the sidebar."""

    conversation_id: int
    participants: tuple[str, ...]
    deleted: tuple[str, ...]
    label: str
    group: bool
    preview: str
    unread: int
    stamp: str

    @property
    def key(self) -> str:
        return peer_key(self.participants)

    def to_json(self) -> dict[str, object]:
        return {
            "cid": self.conversation_id,
            "peer": self.key,
            "label": self.label,
            "group": self.group,
            "deleted": list(self.deleted),
            "preview": self.preview,
            "unread": self.unread,
            "stamp": self.stamp,
        }


def conversation_row(conversation: Conversation, me: str, tz: tzinfo) -> ConversationRow:
    last = conversation.last_message
    preview = " ".join(last.body.split())
    if len(preview) > PREVIEW_CHARS:
        preview = preview[: PREVIEW_CHARS - 1] + "…"
    if last.sender == me and not last.sender_deleted:
        preview = "You: " + preview
    return ConversationRow(
        conversation_id=conversation.conversation_id,
        participants=conversation.participants,
        deleted=conversation.deleted_participants,
        label=label(conversation.participants, conversation.deleted_participants),
        group=len(conversation.participants) > 1,
        preview=preview,
        unread=conversation.unread,
        stamp=timefmt.stamp(last.sent_at_ms, tz),
    )


def sidebar(page: ConversationPage | None, me: str, tz: tzinfo) -> list[ConversationRow]:
    if page is None:
        return []
    return [conversation_row(c, me, tz) for c in page.conversations]


def unread_total(page: ConversationPage | None) -> int:
    return sum(c.unread for c in page.conversations) if page is not None else 0


@dataclass(frozen=True, slots=True)
class Thread:
    """One conversation's page of history, oldest first, and what a reply may do."""

    conversation_id: int  # 0: no message yet
    participants: tuple[str, ...]
    deleted: tuple[str, ...]
    title: str
    messages: list[MessageRow]
    more: bool  # older messages exist: "Load older" asks with before=oldest_id
    reply_to: tuple[str, ...]  # who a reply goes to: the live participants (or me alone)
    notices: list[str]

    @property
    def oldest_id(self) -> int:
        return self.messages[0].message_id if self.messages else 0

    @property
    def newest_id(self) -> int:
        return self.messages[-1].message_id if self.messages else 0

    @property
    def key(self) -> str:
        return peer_key(self.participants)


def thread(
    page: HistoryPage,
    me: str,
    tz: tzinfo,
    *,
    others: Sequence[Conversation] = (),
) -> Thread:
    """A history page as a thread. ``others``: the sidebar's conversations, to warn when a
    name here belonged to a deleted account in another conversation (Rule 19)."""
    rows = [message_row(d, me, tz) for d in reversed(page.messages)]
    deleted = page.deleted_participants
    live = tuple(name for name in page.participants if name not in deleted)
    notices: list[str] = []
    if deleted:
        gone = ", ".join(deleted)
        were = "was" if len(deleted) == 1 else "were"
        notices.append(
            f"The account of {gone} {were} deleted. The name may belong to someone else "
            "now: replies here do not go to that name."
        )
    for other in others:
        if other.conversation_id == page.conversation_id:
            continue
        for name in other.deleted_participants:
            if name in live:
                notices.append(
                    f"{name} is a new account: your earlier conversation with "
                    f"{name}{DELETED_MARK} was with someone else and stays separate."
                )
    reply_to = live if live else (() if deleted else (me,))
    if not page.participants:
        title = "Notes to self"
    else:
        title = label(page.participants, deleted)
    return Thread(
        conversation_id=page.conversation_id,
        participants=page.participants,
        deleted=deleted,
        title=title,
        messages=rows,
        more=page.more,
        reply_to=reply_to,
        notices=list(dict.fromkeys(notices)),
    )


__all__ = [
    "DELETED_MARK",
    "HISTORY_PAGE",
    "SIDEBAR_PAGE",
    "ConversationRow",
    "MessageRow",
    "Thread",
    "conversation_row",
    "label",
    "message_row",
    "peer_key",
    "sidebar",
    "thread",
    "unread_total",
]
