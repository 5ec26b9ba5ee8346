"""Pacing of the requests that cost the server work but give the client nothing to wait for
(issue 14): ACK ids, and the time account searches take. Per session, below every transport.

Theory of operation (docs/LIMITS.md, "Paced requests", gives the numbers to users)
  * Each session has a :class:`Pacer`: two token buckets, one counting ACK ids
    (``ack_ids_per_second``) and one counting seconds of account-search work
    (``list_accounts_share``), each holding at most a second's worth. ``ChatService.ack`` and
    ``ChatService.list_accounts`` take from them before doing the work.
  * A take larger than what is left runs the bucket into debt and says how long to wait it
    off; the service awaits that wait, then does the work. A paced client is slowed to the
    rate, never refused, and nothing but its own request waits: every transport serves one
    session's requests one at a time (custom and protobuf-tcp stop reading the connection while
    a request is in progress, grpc-stream does not read the stream's next message, WebSocket
    does not take the next message), so TCP or HTTP/2 flow control pushes back on the flooder,
    and nobody else's request is queued behind it.
  * A search is charged the time it took (its wall time, a scan's helper thread included)
    plus a fixed charge for the request around it (SEARCH_REQUEST_CHARGE), after it ran, and
    the next search of the session waits off any debt first: charged mostly by time, so a
    person's searches among a few names (~0.2 ms) are never slowed, scans matching nothing
    among 200,000 accounts (18-25 ms each) get ~10 a second, and searches the index answers
    at once ~625 a second.
  * Unary gRPC is the one transport on which one session may have several requests in
    flight. Their waits add up in the bucket (so the session is still held to the rate), and
    at most ``MAX_IN_PROGRESS`` paced requests of one session may be under way at once
    (waiting or working): past that a request is refused at once with LimitExceeded, so a
    flooder can neither park hundreds of sleeping calls on the server nor run a connection's
    100 streams of scans side by side (a search is charged only once it has run).
  * The clock is injectable (``Pacing.clock``), so the schedule is testable without sleeping.
  * Overload (``Pacing.shed_search``): while the server's event loop runs ``shed_lag`` or
    more behind, a search is refused at once with :class:`Overloaded` and a sentence, before
    any work or charge, on every transport alike (each maps the error to its busy answer in
    its one error table), so the loop's time goes to sends, acks and logins; a search is work
    a person can repeat. Core does not watch the loop: ``loop_lag`` is handed in by the
    server process (wirechat/server.py: the lag its loop watch feeds the Guard with), and by
    default the loop is never late (in-process, loopback, tests).

No IO, no transport: arithmetic on a few floats per session, made at its first paced request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import LimitExceeded, Overloaded

#: ACK ids one session may acknowledge per second (a second's worth saved up); more wait. An
#: ACK of 1,024 ids costs the SQLite store 2-4 ms: an ACK flood of 3,000 of them a round took
#: a sixth of the server's CPU in the hostile scene. 10,000 ids a second is a client receiving
#: 10,000 messages a second, far beyond a person's.
ACK_IDS_PER_SECOND = 10_000.0
#: Seconds of account-search work (from the store call to its page, a scan's helper thread
#: included) one session may use per second, a second's worth saved up; a search that finds
#: the allowance spent waits until it is paid off. A non-matching pattern over 200,000
#: accounts is a scan (18-25 ms) and gets ~10 a second: 4 calls kept in flight made 81,675 in
#: 90 s, an eighth of the server's CPU, before this. The bench's 400 back-to-back calls a
#: round (~0.2 ms each) use a twelfth of it.
LIST_ACCOUNTS_SHARE = 0.25
#: Seconds every search is charged on top of its own time: the loop's work around it (reading,
#: decoding, answering, writing), which the search's clock does not see. Charged only its
#: store time (~0.1 ms when the pattern hits the index), one session made ~1,650 searches a
#: second in the hostile scene, each ~0.3 ms of the loop: half a vCPU. With it, such a session
#: gets ~625 a second (0.25 s of allowance / 0.4 ms), and the bench's 400 back-to-back calls
#: a round (~0.2 + 0.3 ms each) still fit in the second's worth saved up.
SEARCH_REQUEST_CHARGE = 0.0003
#: Paced requests (ACKs, searches) of one session under way at once, waiting or working. Only
#: unary gRPC can have more than one (every other transport serves a session's requests one
#: at a time, and ``ChatClient`` acks one delivery after another); each such call holds a
#: stream and one of the server's calls in flight, so a session may hold 4, not a
#: connection's 100 streams.
MAX_IN_PROGRESS = 4
#: Seconds the event loop may run late (smoothed) before searches are refused as overloaded:
#: ``ServerLimits.shed_lag``, which gives the reason for the number (``wirechat server``
#: hands it in); the same default here for a service built without it.
SHED_LAG = 0.2


def never_late() -> float:
    """The loop-lag source of a service whose loop nobody watches: never behind."""
    return 0.0


@dataclass(frozen=True, slots=True)
class Pacing:
    """The rates every session is held to (``wirechat server`` builds it from ServerLimits,
    ``--ack-ids-per-second`` and ``--list-accounts-share``). ``inf`` turns a bucket off."""

    ack_ids_per_second: float = ACK_IDS_PER_SECOND
    list_accounts_share: float = LIST_ACCOUNTS_SHARE
    #: Seconds, monotonic (tests inject a fake clock to read the schedule without sleeping).
    clock: Callable[[], float] = time.monotonic
    #: How late the server's event loop runs now, seconds (smoothed), read at each search:
    #: handed in by the server process, which watches its loop (core never does).
    loop_lag: Callable[[], float] = never_late
    #: The loop lag from which searches are refused (``shed_search``).
    shed_lag: float = SHED_LAG

    def __post_init__(self) -> None:
        if not (self.ack_ids_per_second > 0 and self.list_accounts_share > 0):
            raise ValueError("a pacing rate must be positive (inf: not paced)")
        if not self.shed_lag > 0:
            raise ValueError("the shedding lag must be positive (inf: never shed)")

    def shed_search(self) -> None:
        """Raise :class:`Overloaded` if the loop runs ``shed_lag`` or more behind (module
        docstring, "Overload"): the search is refused before any work, nothing was done."""
        lag = self.loop_lag()
        if lag >= self.shed_lag:
            raise Overloaded(
                f"the server is overloaded (it runs {lag * 1000:.0f} ms behind); "
                "nothing was done: try again in a moment"
            )

    def pacer(self) -> Pacer:
        """A fresh pacer for one session, its buckets full."""
        return Pacer(self)


class Bucket:
    """A token bucket: ``rate`` tokens a second, at most a second's worth saved up. A take
    larger than what is left runs into debt and says how long to wait it off, so a paced
    client is slowed to ``rate``, never refused."""

    __slots__ = ("last", "rate", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        self.rate, self.tokens, self.last = rate, rate, now

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens at time ``now``; the seconds to wait before the work (0.0:
        none, the bucket had them)."""
        rate = self.rate
        tokens = min(rate, self.tokens + (now - self.last) * rate) - cost
        self.tokens, self.last = tokens, now
        return 0.0 if tokens >= 0 else -tokens / rate


class Pacer:
    """One session's buckets (see the module docstring). ``in_progress``: its paced requests
    under way now (the service counts each from its charge to its end)."""

    __slots__ = ("_acks", "_searches", "in_progress", "now")

    def __init__(self, pacing: Pacing) -> None:
        #: The pacing clock (seconds): a search's time is measured with it.
        self.now = clock = pacing.clock
        self._acks = Bucket(pacing.ack_ids_per_second, clock())
        self._searches = Bucket(pacing.list_accounts_share, clock())
        self.in_progress = 0

    def ack(self, ids: int) -> float:
        """Charge an ACK of ``ids`` ids; the seconds it must wait before its work."""
        self._admit()
        return self._acks.take(ids, self.now())

    def search(self) -> float:
        """A search is about to start: the seconds it must wait to pay off what earlier
        searches overspent (it is charged its own time afterwards, ``searched``)."""
        self._admit()
        return self._searches.take(0.0, self.now())

    def searched(self, started: float) -> None:
        """Charge a search the time since ``started`` (``now()`` when it began its work),
        plus SEARCH_REQUEST_CHARGE for the request around it; the next search waits off any
        debt."""
        now = self.now()
        self._searches.take(now - started + SEARCH_REQUEST_CHARGE, now)

    def _admit(self) -> None:
        if self.in_progress >= MAX_IN_PROGRESS:
            raise LimitExceeded(
                f"{self.in_progress} acknowledgements or searches of this session are already "
                f"under way (at most {MAX_IN_PROGRESS}); wait for their answers before "
                "sending more"
            )


__all__ = [
    "ACK_IDS_PER_SECOND",
    "LIST_ACCOUNTS_SHARE",
    "MAX_IN_PROGRESS",
    "SEARCH_REQUEST_CHARGE",
    "SHED_LAG",
    "Bucket",
    "Pacer",
    "Pacing",
    "never_late",
]
