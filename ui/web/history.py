"""What one signed-in browser session has seen: a bounded, thread-safe conversation log.

The chat server keeps only *undelivered* messages; once the gateway has handed a message over
(and acked it) the server forgets it. So the gateway remembers the conversation of each
browser session in memory, so that a reload still shows it, and forgets it at logout.

Threads. Entries are added on the gateway's asyncio thread (incoming pushes) and on Flask's
request threads (sent messages); pages and event streams read from request threads. One
``threading.Condition`` guards everything and wakes the event streams: every change bumps
``version``, and a stream waits for ``version`` to move past the one it last sent.

Bounds. At most ``max_entries`` messages and ``max_bytes`` of message text are kept per
session; the oldest go first. The unread count of a peer never exceeds what is still kept
of that conversation.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from core.types import Delivery, SendResult

#: Messages kept per browser session. A page shows a conversation in full, so this also bounds
#: the size of a page.
MAX_ENTRIES = 1000
#: Message text kept per browser session. One message may be 64 KiB (core.limits), so a count
#: alone would allow 64 MiB per session; with --max-sessions 100 this caps history near 400 MiB.
MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Entry:
    """One message in a conversation, as the page shows it."""

    seq: int  # local, increasing per session: the event stream's id
    incoming: bool
    sender: str
    peers: tuple[str, ...]  # the conversations it belongs to
    recipients: tuple[str, ...]  # for a sent message: every known recipient
    body: str
    sent_at_ms: int
    message_id: int

    @property
    def size(self) -> int:
        return len(self.body) + 64

    def to_json(self) -> dict[str, object]:
        """The entry as the event stream sends it (the page renders it with textContent)."""
        return {
            "seq": self.seq,
            "incoming": self.incoming,
            "sender": self.sender,
            "peers": list(self.peers),
            "recipients": list(self.recipients),
            "body": self.body,
            "sent_at_ms": self.sent_at_ms,
        }


@dataclass(frozen=True, slots=True)
class Conversation:
    peer: str
    last: Entry
    unread: int


@dataclass(frozen=True, slots=True)
class View:
    """A consistent snapshot for rendering one page."""

    last_seq: int
    conversations: list[Conversation]
    thread: list[Entry]
    unread_total: int


@dataclass(frozen=True, slots=True)
class Changes:
    """What an event stream sends after waking: new entries, current unread counts, the end."""

    version: int
    entries: tuple[Entry, ...]
    unread: dict[str, int]
    ended: str | None  # why the session ended, once it has


class History:
    """The bounded conversation log of one signed-in user (``me``)."""

    def __init__(self, me: str, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.me = me
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._cond = threading.Condition()
        self._entries: deque[Entry] = deque()
        self._bytes = 0
        self._per_peer: Counter[str] = Counter()
        self._unread: Counter[str] = Counter()
        self._seq = 0
        self.version = 0
        self.ended: str | None = None

    # -- writers ---------------------------------------------------------------------------
    def add_incoming(self, delivery: Delivery) -> Entry:
        """A message pushed to us. A note to self is already read."""
        with self._cond:
            entry = self._append(
                Entry(
                    seq=self._seq + 1,
                    incoming=True,
                    sender=delivery.sender,
                    peers=(delivery.sender,),
                    recipients=(self.me,),
                    body=delivery.body,
                    sent_at_ms=delivery.sent_at_ms,
                    message_id=delivery.message_id,
                )
            )
            if delivery.sender != self.me:
                self._unread[delivery.sender] += 1
            self._changed()
            return entry

    def add_outgoing(
        self, recipients: tuple[str, ...], body: str, result: SendResult
    ) -> Entry | None:
        """A message we sent. It joins the conversation of every known recipient except
        ourselves: a note to self comes back as an incoming message and shows up that way."""
        unknown = set(result.unknown_recipients)
        known = tuple(name for name in recipients if name not in unknown)
        peers = tuple(name for name in known if name != self.me)
        if not peers:
            return None
        with self._cond:
            entry = self._append(
                Entry(
                    seq=self._seq + 1,
                    incoming=False,
                    sender=self.me,
                    peers=peers,
                    recipients=known,
                    body=body,
                    sent_at_ms=result.sent_at_ms,
                    message_id=result.message_id,
                )
            )
            self._changed()
            return entry

    def mark_read(self, peer: str) -> None:
        with self._cond:
            if self._unread.pop(peer, 0):
                self._changed()

    def wake(self) -> None:
        """Wake every waiter without a change (so it can check its ``stop``)."""
        with self._cond:
            self._cond.notify_all()

    def end(self, reason: str) -> None:
        """The session is over: wake every stream so it can tell its page."""
        with self._cond:
            if self.ended is None:
                self.ended = reason
                self._changed()

    # -- readers ---------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        with self._cond:
            return self._seq

    def unread(self) -> dict[str, int]:
        with self._cond:
            return dict(self._unread)

    def thread(self, peer: str) -> list[Entry]:
        """The conversation with ``peer``, oldest first."""
        with self._cond:
            return self._thread(peer)

    def conversations(self) -> list[Conversation]:
        """One row per peer, the most recently active first."""
        with self._cond:
            return self._conversations()

    def view(self, peer: str | None) -> View:
        """What a page shows, taken at one instant so that its event stream can start
        exactly after it (``last_seq``)."""
        with self._cond:
            return View(
                last_seq=self._seq,
                conversations=self._conversations(),
                thread=self._thread(peer) if peer else [],
                unread_total=sum(self._unread.values()),
            )

    def wait(
        self,
        after_version: int,
        after_seq: int,
        timeout: float,
        stop: Callable[[], bool] = lambda: False,
    ) -> Changes | None:
        """Block until something changed after ``after_version``; None on timeout or when
        ``stop()`` turns true (checked at every :meth:`wake`)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.version > after_version or stop(), timeout):
                return None
            if self.version <= after_version:
                return None
            entries = tuple(entry for entry in self._entries if entry.seq > after_seq)
            return Changes(self.version, entries, dict(self._unread), self.ended)

    # -- internals (called with the lock held) ----------------------------------------------
    def _thread(self, peer: str) -> list[Entry]:
        return [entry for entry in self._entries if peer in entry.peers]

    def _conversations(self) -> list[Conversation]:
        latest: dict[str, Entry] = {}
        for entry in self._entries:
            for peer in entry.peers:
                latest[peer] = entry
        rows = [Conversation(p, e, self._unread.get(p, 0)) for p, e in latest.items()]
        rows.sort(key=lambda row: row.last.seq, reverse=True)
        return rows

    def _append(self, entry: Entry) -> Entry:
        self._seq = entry.seq
        self._entries.append(entry)
        self._bytes += entry.size
        self._per_peer.update(entry.peers)
        while len(self._entries) > self.max_entries or (
            self._bytes > self.max_bytes and len(self._entries) > 1
        ):
            self._evict(self._entries.popleft())
        return entry

    def _evict(self, entry: Entry) -> None:
        self._bytes -= entry.size
        for peer in entry.peers:
            self._per_peer[peer] -= 1
            kept = self._per_peer[peer]
            if kept <= 0:
                del self._per_peer[peer]
                self._unread.pop(peer, None)
            elif self._unread.get(peer, 0) > kept:
                self._unread[peer] = kept

    def _changed(self) -> None:
        self.version += 1
        self._cond.notify_all()


__all__ = ["MAX_BYTES", "MAX_ENTRIES", "Changes", "Conversation", "Entry", "History", "View"]
