"""ChatService: the chat domain, every Rule of DESIGN.md, with no transport in sight.

Theory of operation
  * Everything runs on one asyncio loop, so the in-memory maps need no locks. The only work
    sent off the loop is password hashing (core.passwords).
  * A transport opens a :class:`Session` per client (a connection, a gRPC token), calls the
    methods below with it, and drains ``session.deliveries()`` to push messages to the client.
    When the service ends a session (account deleted, slow consumer, failed login) the session
    is CLOSED and the transport closes the connection after sending its reply.
  * send (Rules 8-10): validate, store durably (one transaction), then push to every live
    session of every known recipient, then return. A message stays pending until some session
    of the recipient acks it (Rule 11); a session that never acks leaves it pending for the
    next login (Rule 12).
  * delete_account (Rules 14-15, 25): one store transaction removes the account's history,
    everything pending to it and, under the default PURGE policy, its undelivered messages to
    others; the account stays as a tombstone so what it sent that others still hold shows as
    from a deleted account; then every session of that user is ended.
  * Identity (Rule 19): sessions and the store work with account ids; a name is looked up once,
    at login. Live sessions are indexed by account id, so a re-registered name (a new id)
    never receives what was meant for the old account.
  * History (Rules 20-24) lives in the store; the service checks, pages and pushes notices:
    a "sent by you" copy to the sender's other sessions (SentCopy), read marks to the user's
    other sessions (ReadMarker), "these ids are gone" to every live session of every user
    whose history lost them (MessagesDeleted). Notices go through the same per-session queue
    as deliveries, so each session sees them in commit order.
  * Retention (optional): at most one prune runs per PRUNE_INTERVAL, started by a send.
  * Pushes go through the bus (core.bus): in one process a call back into ``deliver``; in a
    cluster (core.nats_bus) also a publish to the nodes holding the user's other sessions,
    with the recipient's sequence number so a node can repair a gap from the database.
  * Account security (issue 13). Signup, login and resume give the session a resume token:
    32 random bytes, text for the client, only its SHA-256 in the store (a high-entropy
    secret needs no slow hash: nobody can guess 2**256 inputs, so a fast hash of a leaked
    table reveals nothing), with an expiry. Resume is a login by token (the same token comes
    back, its lifetime unchanged). Logout revokes the session's token, a password change
    (with end_other_sessions) or a deletion every token of the account. A new password
    meets core.password_policy; deletion and a password change ask for the password again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from core import limits
from core.bus import Bus, LocalBus
from core.errors import (
    AlreadyLoggedIn,
    AuthFailed,
    ChatError,
    Forbidden,
    InvalidArgument,
    LimitExceeded,
    NotLoggedIn,
    ResumeRefused,
    SessionClosed,
    UsernameTaken,
)
from core.frozen import builder
from core.pacing import Pacer, Pacing
from core.password_policy import check_new_password
from core.passwords import HashCost, Passwords
from core.session import Session, State
from core.store import DuplicateAccount, NotSender, Removed, Store, StoredMessage
from core.throttle import LoginThrottle
from core.types import (
    AccountPage,
    CloseReason,
    ConversationPage,
    DeletedSenderPolicy,
    Delivery,
    HistoryPage,
    LoginResult,
    MessagesDeleted,
    Notice,
    PasswordChanged,
    ReadMarker,
    Retention,
    SendResult,
    SentCopy,
)

log = logging.getLogger(__name__)

#: Message ids are SQLite integer keys: positive and below 2**63.
MAX_MESSAGE_ID = 2**63
#: Seconds between two retention prunes (each walks the history table once).
PRUNE_INTERVAL = 60.0
DAY_MS = 86_400_000


#: ``SendResult(...)`` at a third of the cost, once per send (core.frozen); and the values
#: of a push, once per live session that sees a message.
_send_result = builder(SendResult)
_delivery = builder(Delivery)
_sent_copy = builder(SentCopy)

#: What a send reads on every call, as module constants: an enum member read from its class
#: goes through the enum's ``__getattr__`` hook (~850 instructions on CPython 3.11), a
#: module's attribute is a dict lookup more than a global.
_ACTIVE = State.ACTIVE
_CLOSED = State.CLOSED
_MAX_BODY_BYTES = limits.MAX_BODY_BYTES
_time_ns = time.time_ns
#: The sequence numbers of a store that keeps none (read only).
_NO_SEQS: dict[int, int] = {}

#: A store's ``add_message_now(sender_id, body, now_ms, recipients)``: ``add_message`` as a
#: plain call, (message id, conversation id, the names stored for -> their ids).
AddNow = Callable[[int, str, int, Sequence[str]], tuple[int, int, dict[str, int]]]
#: What a store's add gives: ``add_message_now``'s tuple (also ``add_message_future``'s
#: result) or ``add_message``'s StoredMessage.
Added = StoredMessage | tuple[int, int, dict[str, int]]
#: A send checked, its message handed to a store that waits to add (``ChatService.send_begun``):
#: (the store's add under way, to wait for; then the session, the sender's name and id, the
#: body, sent at in ms, the recipient names, for ``ChatService.send_stored``).
Begun = tuple[Awaitable[Added], Session, str, int, str, int, Sequence[str]]
#: ``ChatService.send_now``: ``send`` as a plain call, on a store that never waits to add.
SendNow = Callable[[Session, Sequence[str], str], SendResult]


def _missing(names: Sequence[str], found: dict[str, int]) -> tuple[str, ...]:
    """The ``names`` that are not in ``found``, in order: a send's unknown recipients."""
    return tuple([n for n in names if n not in found])


def _without(names: list[str], name: str) -> tuple[str, ...]:
    """``names`` but ``name``: a conversation's other participants as one of them sees it."""
    return tuple([n for n in names if n != name])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def validate_username(username: str) -> None:
    if not limits.USERNAME_RE.fullmatch(username):
        raise InvalidArgument("a username is 1-32 characters of letters, digits, '_', '.' or '-'")


def token_hash(token: str) -> bytes:
    """What the store keeps of a resume token: its SHA-256 (see the theory above)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


#: A password this long was never accepted (new ones are at most limits.MAX_PASSWORD_BYTES), so
#: a check against it fails at once, without hashing megabytes (login, change, deletion).
_NEVER_A_PASSWORD_CHARS = 4096


#: A name longer than this (in characters) is longer than any username (its UTF-8 bytes).
_NAME_MAX = limits.MAX_USERNAME_CHARS * 4

#: Characters a username may hold (Rule 1), and the two wildcards of a pattern (Rule 7).
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_PATTERN_CHARS = _NAME_CHARS | {"*", "?"}


def could_match_a_username(pattern: str) -> bool:
    """False when no valid username can match: a character no name holds, or more than 32
    characters besides ``*``. Such a pattern would cost a scan of every name for nothing
    (issue 14), so it is answered at once."""
    if not _PATTERN_CHARS.issuperset(pattern):
        return False
    return len(pattern) - pattern.count("*") <= limits.MAX_USERNAME_CHARS


def glob_to_sqlite(pattern: str) -> str:
    """Our glob has only * and ?; escape SQLite GLOB's other special, '['."""
    return pattern.replace("[", "[[]")


class ChatService:
    """The chat domain over one Store.

    ``retention`` (optional) bounds history (Rule 20): keep at most
    ``max_messages_per_user`` copies per user (newest kept) and/or drop copies of messages
    older than ``max_age_days``. A copy still pending for its recipient is never dropped.
    Pruning runs in the background at most once per PRUNE_INTERVAL, started by a send, or
    now with :meth:`prune_history`. Pruned copies are not announced (clients keep what they
    have shown); deletions by users are (MessagesDeleted).
    """

    def __init__(
        self,
        store: Store,
        *,
        deleted_sender: DeletedSenderPolicy = DeletedSenderPolicy.PURGE,
        hash_cost: HashCost = HashCost.DEFAULT,
        throttle: LoginThrottle | None = None,
        retention: Retention | None = None,
        bus: Bus | None = None,
        pacing: Pacing | None = None,
    ) -> None:
        self.store = store
        #: The rates every session's ACKs and account searches are held to (core.pacing).
        self.pacing = pacing or Pacing()
        #: How pushes reach live sessions: this process only (LocalBus) or every node.
        self.bus = bus or LocalBus()
        self.bus.attach(self)
        #: Read by every send: the bus reaches other processes (push for every recipient,
        #: live here or not), or it is the LocalBus, whose publish is a call to ``deliver``
        #: (the send makes that call itself).
        self._anywhere = not self.bus.local
        self._direct = type(self.bus) is LocalBus
        #: The store's ``add_message_now`` if it has one: ``add_message`` for a store that
        #: never waits to add (MemoryStore), as a plain call, (message id, conversation id,
        #: recipients) without the coroutine and the StoredMessage (issue 10).
        self._add_now: AddNow | None = getattr(store, "add_message_now", None)
        #: ``send`` as a plain call, with no coroutine, when the store never waits to add
        #: (``_add_now``, read here), else None: a driver serves a SEND with it on its own
        #: stack (the custom server; issue 10). The same checks and the same steps as
        #: ``send``, which calls it too.
        self.send_now: SendNow | None = None
        if self._add_now is not None:
            self.send_now = cast(SendNow, self.send_begun)
        #: The store's ``add_message_future`` if it has one (SqliteStore: its write queued at
        #: the call, a future to await, no coroutine around it, giving ``add_message_now``'s
        #: tuple), else ``add_message`` (a StoredMessage). ``send`` awaits that and nothing
        #: else; the custom driver waits for the store's commit itself (``send_begun``,
        #: transports/custom/_server.py's ``_StagedConnection``).
        self._add_later: Callable[..., Awaitable[Added]]
        self._add_later = getattr(store, "add_message_future", store.add_message)
        self.deleted_sender = deleted_sender
        self.retention = retention or Retention()  # (sets ``_retaining`` too)
        self._passwords = Passwords(hash_cost)
        self._throttle = throttle or LoginThrottle()
        self._live: dict[int, set[Session]] = {}  # account id -> its live sessions
        self._sessions: set[Session] = set()
        self._last_prune = float("-inf")
        self._pruning: asyncio.Task[int] | None = None

    @property
    def retention(self) -> Retention:
        return self._retention

    @retention.setter
    def retention(self, retention: Retention) -> None:
        self._retention = retention
        #: ``retention.enabled``, read by every send (a property is a Python call).
        self._retaining = retention.enabled

    # -- sessions ----------------------------------------------------------------------------
    def open_session(self, peer: str | None = None) -> Session:
        """A new anonymous session; ``peer`` is the client's IP when the transport knows it."""
        session = Session(peer)
        self._sessions.add(session)
        return session

    def close_session(
        self, session: Session, reason: CloseReason = CloseReason.DISCONNECTED
    ) -> None:
        """End a session for a transport reason (connection lost, too slow, shutting down)."""
        self._end(session, reason)

    def live_sessions(self, username: str) -> int:
        return sum(1 for s in self._sessions if s.active and s.username == username)

    async def shutdown(self) -> None:
        for session in list(self._sessions):
            self._end(session, CloseReason.SHUTDOWN)
        if self._pruning is not None and not self._pruning.done():
            self._pruning.cancel()

    # -- accounts (Rules 1-7) ----------------------------------------------------------------
    async def signup(self, session: Session, username: str, password: str) -> LoginResult:
        self._require_anonymous(session)
        try:
            validate_username(username)
            check_new_password(password)
            if await self.store.password_hash(username) is not None:
                raise UsernameTaken(f"the username {username!r} is taken")
            password_hash = await self._passwords.hash(password)
            self._require_anonymous(session)  # the client may have gone while we hashed
            try:
                account_id = await self.store.create_account(username, password_hash, now_ms())
            except DuplicateAccount:
                raise UsernameTaken(f"the username {username!r} is taken") from None
        except ChatError:
            self._end(session, CloseReason.AUTH_FAILED)
            raise
        log.info("signup %s (session %d)", username, session.id)
        return await self._start(session, username, account_id)

    async def login(self, session: Session, username: str, password: str) -> LoginResult:
        self._require_anonymous(session)
        try:
            if len(username) > _NAME_MAX or len(password) > _NEVER_A_PASSWORD_CHARS:
                raise AuthFailed()  # don't let junk into the throttle table or the hasher
            # Refused at once (TooManyAttempts), or waits out this address's own backoff:
            # never behind other addresses' attempts (core.throttle).
            async with self._throttle.attempt(username, session.peer):
                account = await self.store.find_account(username)
                stored = account.password_hash if account else None
                # Always a full check, against a dummy hash when there is no account, so an
                # unknown name costs the same time as a wrong password (Rule 3).
                turn = self._throttle.priority(username, session.peer)  # (the owner first)
                verified = await self._passwords.verify(stored, password, turn)
                if account is None or not verified:
                    raise AuthFailed()
            self._require_anonymous(session)
        except ChatError:
            self._end(session, CloseReason.AUTH_FAILED)
            raise
        return await self._start(session, username, account.id)

    async def resume(self, session: Session, token: str) -> LoginResult:
        """Log the session in with the resume token of an earlier login, without the
        password; the same token comes back. Unknown, expired or revoked: ResumeRefused,
        and the session ends as after a failed login (Rule 4). Not throttled: a guess has a
        2**-256 chance and costs the guesser a connection each."""
        self._require_anonymous(session)
        try:
            if not token or len(token) > limits.MAX_RESUME_TOKEN_CHARS:
                raise ResumeRefused()
            digest = token_hash(token)
            found = await self.store.resume_account(digest, now_ms())
            if found is None:
                raise ResumeRefused()
            self._require_anonymous(session)
        except ChatError:
            self._end(session, CloseReason.AUTH_FAILED)
            raise
        account_id, username = found
        log.info("resume %s (session %d)", username, session.id)
        return await self._start(session, username, account_id, (token, digest))

    async def logout(self, session: Session) -> None:
        username = self._require_active(session)
        digest = session.resume_token_hash
        self._unregister(session, username)
        session._logged_out()  # (at once, before any await: nothing can end it half-way)
        if digest is not None:  # revoked before the reply, so "logged out" means revoked
            await self.store.revoke_resume_token(digest)

    async def change_password(
        self,
        session: Session,
        old_password: str,
        new_password: str,
        end_other_sessions: bool = True,
    ) -> PasswordChanged:
        """Replace the account's password (issue 13). ``old_password`` is checked first
        (AuthFailed, nothing changes, the session stays); the new one meets the policy
        (WeakPassword). With ``end_other_sessions`` every other live session of the user
        ends (PASSWORD_CHANGED) and every resume token is revoked; this session gets a new
        token either way (its old one is revoked)."""
        username = self._require_active(session)
        account_id = self._account_id(session)
        check_new_password(new_password)
        await self._verify_again(session, username, old_password, "the password was not changed")
        new_hash = await self._passwords.hash(new_password)
        self._require_active(session)  # the session may have ended while we hashed
        # Tokens go first: a crash between the two writes leaves the old password working
        # and no token, never a stolen token working with the new password.
        if end_other_sessions:
            await self.store.revoke_resume_tokens(account_id)
        elif session.resume_token_hash is not None:
            await self.store.revoke_resume_token(session.resume_token_hash)
        await self.store.set_password_hash(account_id, new_hash)
        ended = 0
        if end_other_sessions:
            for other in list(self._live.get(account_id, ())):
                if other is not session:
                    self._end(other, CloseReason.PASSWORD_CHANGED)
                    ended += 1
            self.bus.end_sessions(account_id, CloseReason.PASSWORD_CHANGED)  # (other nodes')
        token = await self._issue_token(session, account_id)
        log.info("password changed for %s (%d other sessions ended)", username, ended)
        return PasswordChanged(token, ended)

    async def list_accounts(
        self, session: Session, pattern: str = "*", after: str = "", limit: int = 0
    ) -> AccountPage:
        self._require_active(session)
        if len(pattern) > limits.MAX_PATTERN_CHARS:
            raise LimitExceeded(f"a pattern is at most {limits.MAX_PATTERN_CHARS} characters")
        if len(after) > _NAME_MAX:
            raise LimitExceeded("the paging cursor is longer than any username")
        if limit < 0:
            raise InvalidArgument("the page size must not be negative")
        page_size = min(limit or limits.DEFAULT_PAGE_SIZE, limits.MAX_PAGE_SIZE)
        if not could_match_a_username(pattern or "*"):
            return AccountPage((), more=False)  # answered without touching the store
        # Refused while the loop runs behind, and paced by the time searches take
        # (core.pacing): wait off what earlier ones overspent, then charge this one its time.
        self.pacing.shed_search()
        pacer = self._pacer(session)
        wait = pacer.search()
        pacer.in_progress += 1
        try:
            if wait:
                await asyncio.sleep(wait)
                self._require_active(session)  # (it may have ended meanwhile)
                self.pacing.shed_search()  # (or the loop fallen behind)
            started = pacer.now()
            names = await self.store.list_accounts(
                glob_to_sqlite(pattern or "*"), after, page_size + 1
            )
            pacer.searched(started)
        finally:
            pacer.in_progress -= 1
        return AccountPage(tuple(names[:page_size]), more=len(names) > page_size)

    async def delete_account(self, session: Session, username: str, password: str = "") -> None:
        """Delete the caller's own account (Rules 14-15); ``password`` is asked again (issue
        13): missing or wrong raises AuthFailed, nothing is deleted, the session stays."""
        own = self._require_active(session)
        account_id = self._account_id(session)
        if username != own:
            raise Forbidden("you can delete only your own account")
        if not password:
            # (what a client from before issue 13 sends on gRPC and websocket: no password)
            raise AuthFailed("deleting an account now needs your password; update your client")
        await self._verify_again(session, own, password, "the account was not deleted")
        self._require_active(session)
        removed = await self.store.delete_account(
            account_id,
            purge_sent=self.deleted_sender is DeletedSenderPolicy.PURGE,
            now_ms=now_ms(),
        )
        log.info("deleted account %s", own)
        for other in list(self._live.get(account_id, ())):
            self._end(other, CloseReason.ACCOUNT_DELETED)
        self._end(session, CloseReason.ACCOUNT_DELETED)
        self.bus.end_sessions(account_id, CloseReason.ACCOUNT_DELETED)  # (other nodes')
        self._tell_removed(removed)  # purged copies others may have on screen (unacked)

    # -- messages (Rules 8-13) ---------------------------------------------------------------
    async def send(self, session: Session, recipients: Sequence[str], body: str) -> SendResult:
        """Send ``body`` to ``recipients`` (Rules 8-10): checked, stored, pushed, answered.
        ``send_begun`` then, on a store that waits to add, ``send_stored`` with what the add
        gave: this coroutine awaits the store's add and nothing else."""
        begun = self.send_begun(session, recipients, body)
        if not isinstance(begun, tuple):  # (a store that never waits: sent already)
            return begun
        return self.send_stored(begun, await begun[0])

    def send_begun(
        self, session: Session, recipients: Sequence[str], body: str
    ) -> SendResult | Begun:
        """``send`` as a plain call, up to the store: every check of a send (the one copy of
        them), then on a store that never waits to add the whole send (its SendResult: this
        is ``send_now``); on another the store's add started: a ``Begun``, whose first item
        the caller waits for (``send`` awaits it; the custom driver wakes from the SQLite
        store's commit), then gives what it gave to ``send_stored``."""
        # (The hot path of the server: issue 10 counts its instructions, and a Python call
        # costs about as much as one of the checks below; hence the inlined fast paths, the
        # module constants (an enum member read from its class is ~850 instructions) and no
        # variable read by a nested function (each is a cell, made on every call).)
        sender = session.username
        if session.state is not _ACTIVE or sender is None:
            sender = self._require_active(session)  # (raises why not)
        if type(recipients) is tuple and len(recipients) == 1 and len(recipients[0]) <= _NAME_MAX:
            names: Sequence[str] = recipients  # (most messages: _validate_recipients' first case)
        else:
            names = self._validate_recipients(recipients)
        # (an ASCII body's length is its size: only other text is encoded to count it)
        body_size = len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))
        if body_size == 0:
            raise InvalidArgument("a message body is at least 1 byte")
        if body_size > _MAX_BODY_BYTES:
            raise LimitExceeded(
                f"a message body is at most {_MAX_BODY_BYTES} bytes (got {body_size})"
            )
        sender_id = session.account_id
        assert sender_id is not None  # (set with the ACTIVE state)
        sent_at = _time_ns() // 1_000_000  # (now_ms())
        add_now = self._add_now
        if add_now is None:  # a store that waits: its add starts here, ``send_stored`` ends
            added = self._add_later(sender_id, body, sent_at, names)
            return added, session, sender, sender_id, body, sent_at, names
        stored = add_now(sender_id, body, sent_at, names)
        return self._sent(session, sender, sender_id, body, sent_at, names, stored, _NO_SEQS)

    def send_stored(self, begun: Begun, added: Added) -> SendResult:
        """The end of a send that ``send_begun`` handed to a store that waits, once the store
        holds the message (Rule 9): ``added`` is what its add gave. Its pushes, its result."""
        _, session, sender, sender_id, body, sent_at, names = begun
        if isinstance(added, tuple):  # (add_message_future's: SQLite keeps no sequences)
            return self._sent(session, sender, sender_id, body, sent_at, names, added, _NO_SEQS)
        stored = (added.message_id, added.conversation_id, added.recipients)
        return self._sent(session, sender, sender_id, body, sent_at, names, stored, added.seqs)

    def _sent(
        self,
        session: Session,
        sender: str,
        sender_id: int,
        body: str,
        sent_at: int,
        names: Sequence[str],
        stored: tuple[int, int, dict[str, int]],
        seqs: dict[int, int],
    ) -> SendResult:
        """A send whose message is ``stored`` (Rule 9: message id, conversation id, the names
        it was stored for -> their ids; ``seqs``, the recipients' sequence numbers if the
        store keeps them): its pushes and its result."""
        message_id, conversation_id, delivered_to = stored
        unknown = () if len(delivered_to) == len(names) else _missing(names, delivered_to)
        if not delivered_to:
            return _send_result(0, sent_at, unknown)
        # Pushes only if someone is there to see them: a recipient's live session, or (Rule
        # 24) another of the sender's; on every node when the bus reaches others.
        anywhere = self._anywhere  # other nodes may hold anyone's sessions
        live = self._live
        push = anywhere
        if not push:
            for account_id in delivered_to.values():
                if account_id in live:
                    push = True
                    break
            else:
                push = len(live.get(sender_id, ())) > 1 and sender not in delivered_to
        if push:  # to every live session of every recipient it was stored for (Rule 10),
            # with the conversation's other participants (Rule 21), and a "sent by you" copy
            # to the sender's other sessions (Rule 24; a note to self went to all)
            direct = self._direct  # (a LocalBus: its publish is a call to deliver; made here)
            everyone: list[str] | None = None  # built only if someone is there to see it
            for name, account_id in delivered_to.items():
                if anywhere or account_id in live:
                    everyone = everyone or sorted({sender, *delivered_to})
                    others = _without(everyone, name)  # Rule 21: who else
                    delivery = _delivery(
                        message_id, sender, body, sent_at, others, False, conversation_id
                    )
                    if direct:
                        self.deliver(account_id, delivery)
                    else:
                        self._push(account_id, delivery, seq=seqs.get(account_id, 0))
            # Rule 24, to the sender's other sessions (a note to self was delivered to all).
            if (anywhere or len(live.get(sender_id, ())) > 1) and sender not in delivered_to:
                everyone = everyone or sorted({sender, *delivered_to})
                mine = _without(everyone, sender)
                copy = _sent_copy(
                    _delivery(message_id, sender, body, sent_at, mine, False, conversation_id)
                )
                if direct:
                    self.deliver(sender_id, copy, skip=session)
                else:
                    self._push(sender_id, copy, skip=session)
        if self._retaining:
            self._maybe_prune()
        return _send_result(message_id, sent_at, unknown, conversation_id)

    async def ack(self, session: Session, message_ids: Sequence[int]) -> None:
        self._require_active(session)
        if len(message_ids) > limits.MAX_ACK_IDS:
            raise LimitExceeded(f"at most {limits.MAX_ACK_IDS} ids per ack")
        # Paced by its ids (core.pacing: an ACK flood froze the server): wait, then work.
        pacer = self._pacer(session)
        wait = pacer.ack(len(message_ids))
        pacer.in_progress += 1
        try:
            if wait:
                await asyncio.sleep(wait)
                self._require_active(session)  # (it may have ended meanwhile)
            # Ids the store cannot hold (SQLite integers are signed 64-bit) cannot be pending.
            valid = [mid for mid in message_ids if 0 < mid < MAX_MESSAGE_ID]
            if valid:
                await self.store.mark_delivered(self._account_id(session), valid)
        finally:
            pacer.in_progress -= 1

    # -- history (Rules 19-25) ---------------------------------------------------------------
    async def list_conversations(
        self, session: Session, before_id: int = 0, limit: int = 0
    ) -> ConversationPage:
        """The caller's conversations, most recent first, each with its last message and
        unread count (Rule 21). Page on with before_id = the last one's last message id."""
        self._require_active(session)
        page_size = self._page_size(limit)
        found = await self.store.list_conversations(
            self._account_id(session), self._cursor(before_id), page_size + 1
        )
        return ConversationPage(tuple(found[:page_size]), more=len(found) > page_size)

    async def read_history(
        self,
        session: Session,
        participants: Sequence[str] = (),
        before_id: int = 0,
        limit: int = 0,
        conversation_id: int = 0,
    ) -> HistoryPage:
        """One conversation of the caller's history, newest first (Rules 20-21).

        The conversation is named either by its id (from a Delivery, a Conversation or an
        earlier page; the only way to reach one with a since-deleted participant) or by its
        other participants' names (yours may be included; none = notes to yourself).
        A conversation that does not exist yet gives an empty page with id 0.
        """
        me = self._require_active(session)
        my_id = self._account_id(session)
        if conversation_id and participants:
            raise InvalidArgument("name the conversation by its id or by its participants")
        if conversation_id < 0 or conversation_id >= MAX_MESSAGE_ID:
            raise InvalidArgument("a conversation id is a positive integer")
        page_size = self._page_size(limit)
        before = self._cursor(before_id)
        if not conversation_id:
            names = self._validate_participants(participants, me)
            ids = await self.store.account_ids(names) if names else {}
            if len(ids) < len(names):  # someone has no account: no such conversation
                return HistoryPage(0, tuple(sorted(names)), (), False)
            conversation_id = await self.store.conversation_of({my_id, *ids.values()})
            if not conversation_id:
                return HistoryPage(0, tuple(sorted(names)), (), False)
        members = await self.store.members(conversation_id)
        if not any(m.id == my_id for m in members):
            return HistoryPage(conversation_id, (), (), False)  # not yours: nothing to see
        others = [m for m in members if m.id != my_id]
        found = await self.store.read_history(my_id, conversation_id, before, page_size + 1)
        return HistoryPage(
            conversation_id,
            tuple(sorted(m.username for m in others)),
            tuple(found[:page_size]),
            more=len(found) > page_size,
            deleted_participants=tuple(sorted(m.username for m in others if m.deleted)),
            read_up_to=await self.store.read_up_to(my_id, conversation_id),
        )

    async def mark_read(self, session: Session, conversation_id: int, up_to_id: int) -> ReadMarker:
        """Everything in the conversation up to ``up_to_id`` is read (Rule 22). The mark only
        rises, never past the conversation's last message; the caller's other live sessions
        are told. Read is not delivered: pending and ack are untouched."""
        self._require_active(session)
        my_id = self._account_id(session)
        if up_to_id < 0:
            raise InvalidArgument("a message id is not negative")
        members = (
            await self.store.members(conversation_id)
            if 0 < conversation_id < MAX_MESSAGE_ID
            else []
        )
        if not any(m.id == my_id for m in members):
            raise InvalidArgument(f"you have no conversation {conversation_id}")
        mark, unread = await self.store.mark_read(
            my_id, conversation_id, min(up_to_id, MAX_MESSAGE_ID - 1)
        )
        marker = ReadMarker(conversation_id, mark, unread)
        self._push(my_id, marker, skip=session)
        return marker

    async def delete_messages(
        self, session: Session, message_ids: Sequence[int], for_everyone: bool = False
    ) -> None:
        """Delete messages from the caller's history, or (for_everyone) from every
        participant's history and pending copies, which only their sender may do (Rule 23).
        Ids the caller does not hold are ignored. Every live session of every user who lost
        a copy is told which ids are gone (MessagesDeleted), the caller's included."""
        self._require_active(session)
        if len(message_ids) > limits.MAX_DELETE_IDS:
            raise LimitExceeded(f"at most {limits.MAX_DELETE_IDS} ids per delete")
        valid = [mid for mid in message_ids if 0 < mid < MAX_MESSAGE_ID]
        if not valid:
            return
        try:
            removed = await self.store.delete_messages(
                self._account_id(session), valid, for_everyone
            )
        except NotSender as exc:
            listed = ", ".join(str(i) for i in exc.message_ids[:10])
            raise Forbidden(
                f"only the sender may delete a message for everyone; you did not send {listed}"
            ) from None
        self._tell_removed(removed)

    async def prune_history(self) -> int:
        """Apply the retention limit now; returns how many history copies went."""
        retention = self.retention
        if not retention.enabled:
            return 0
        older_than = None
        if retention.max_age_days is not None:
            older_than = now_ms() - int(retention.max_age_days * DAY_MS)
        pruned = await self.store.prune_history(retention.max_messages_per_user, older_than)
        if pruned:
            log.info("retention: pruned %d history copies", pruned)
        return pruned

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _page_size(limit: int) -> int:
        if limit < 0:
            raise InvalidArgument("the page size must not be negative")
        return min(limit or limits.DEFAULT_PAGE_SIZE, limits.MAX_PAGE_SIZE)

    @staticmethod
    def _cursor(before_id: int) -> int:
        """A before-id cursor: 0 (or beyond any id) means from the newest."""
        if before_id < 0:
            raise InvalidArgument("a paging cursor is not negative")
        return before_id if before_id < MAX_MESSAGE_ID else 0

    def _validate_participants(self, participants: Sequence[str], me: str) -> list[str]:
        """The other participants' names (yours dropped, repeats allowed and merged)."""
        names = list(participants)
        if len(names) > limits.MAX_RECIPIENTS + 1:
            raise LimitExceeded(f"a conversation has at most {limits.MAX_RECIPIENTS + 1} people")
        if any(len(name) > _NAME_MAX for name in names):
            raise LimitExceeded("a participant name is longer than any username")
        return sorted(set(names) - {me})

    def _validate_recipients(self, recipients: Sequence[str]) -> list[str]:
        names = list(recipients)
        if len(names) == 1:  # (most messages: nothing to compare, on the path of every send)
            if len(names[0]) > _NAME_MAX:
                raise LimitExceeded("a recipient name is longer than any username")
            return names
        if not names:
            raise InvalidArgument("name at least one recipient")
        if len(names) > limits.MAX_RECIPIENTS:
            raise LimitExceeded(
                f"at most {limits.MAX_RECIPIENTS} recipients per message (got {len(names)})"
            )
        if len(set(names)) != len(names):
            raise InvalidArgument("each recipient may be named only once")
        if max(map(len, names)) > _NAME_MAX:
            raise LimitExceeded("a recipient name is longer than any username")
        return names

    def _push(
        self,
        account_id: int,
        event: Delivery | Notice,
        skip: Session | None = None,
        seq: int = 0,
    ) -> None:
        """Push to every live session of the account, on every node (through the bus)."""
        self.bus.publish(account_id, event, skip, seq)

    def deliver(
        self, account_id: int, event: Delivery | Notice, skip: Session | None = None
    ) -> None:
        """Queue on this process's live sessions of the account (the bus calls this)."""
        for session in list(self._live.get(account_id, ())):
            if session is skip:
                continue
            if not session._push(event):
                log.warning(
                    "session %d of %s is too slow; disconnecting", session.id, session.username
                )
                self._end(session, CloseReason.SLOW_CONSUMER)

    def end_local_sessions(self, account_id: int, reason: CloseReason) -> None:
        """End this process's live sessions of the account (another node deleted it)."""
        for session in list(self._live.get(account_id, ())):
            self._end(session, reason)

    def _tell_removed(self, removed: Removed) -> None:
        for account_id, ids in removed.items():
            if ids:
                self._push(account_id, MessagesDeleted(tuple(sorted(ids))))

    async def _start(
        self,
        session: Session,
        username: str,
        account_id: int,
        resumed: tuple[str, bytes] | None = None,
    ) -> LoginResult:
        """Log the session in; a new resume token unless ``resumed`` (token, hash) is given."""
        if resumed is None:
            token = await self._issue_token(None, account_id)
            digest = token_hash(token)
        else:
            token, digest = resumed
        pending = await self.store.pending_count(account_id)
        session._logged_in(username, self.store, account_id)
        session.resume_token_hash = digest
        self._live.setdefault(account_id, set()).add(session)
        await self.bus.watch(account_id)  # (a cluster: this node now hears of the account)
        return LoginResult(username, pending, token)

    async def _issue_token(self, session: Session | None, account_id: int) -> str:
        """A new resume token for the account, stored hashed; the session's if given."""
        token = secrets.token_urlsafe(limits.RESUME_TOKEN_BYTES)
        digest = token_hash(token)
        expires = now_ms() + limits.RESUME_TOKEN_LIFETIME_S * 1000
        await self.store.add_resume_token(account_id, digest, expires)
        if session is not None:
            session.resume_token_hash = digest
        return token

    async def _verify_again(
        self, session: Session, username: str, password: str, unchanged: str
    ) -> None:
        """Check a logged-in user's password once more (change password, deletion), under
        the login throttle (Rule 3): AuthFailed saying ``unchanged`` when it is wrong."""
        if len(password) > _NEVER_A_PASSWORD_CHARS:
            raise AuthFailed(f"wrong password; {unchanged}")
        async with self._throttle.attempt(username, session.peer):
            account = await self.store.find_account(username)
            stored = account.password_hash if account and account.id == session.account_id else None
            if not await self._passwords.verify(stored, password):
                raise AuthFailed(f"wrong password; {unchanged}")

    def _pacer(self, session: Session) -> Pacer:
        """The session's pacer, made at its first paced request (idle sessions hold none)."""
        pacer = session.pacer
        if pacer is None:
            pacer = session.pacer = self.pacing.pacer()
        return pacer

    @staticmethod
    def _account_id(session: Session) -> int:
        assert session.account_id is not None  # (set with the ACTIVE state)
        return session.account_id

    def _maybe_prune(self) -> None:
        """Start a retention prune if one is due (at most one per PRUNE_INTERVAL)."""
        if not self.retention.enabled:
            return
        now = time.monotonic()
        if now - self._last_prune < PRUNE_INTERVAL:
            return
        if self._pruning is not None and not self._pruning.done():
            return
        self._last_prune = now
        self._pruning = asyncio.get_running_loop().create_task(
            self.prune_history(), name="wirechat-prune"
        )

    def _require_anonymous(self, session: Session) -> None:
        if session.state is _ACTIVE:
            raise AlreadyLoggedIn()
        if session.state is _CLOSED:
            raise SessionClosed(self._closed_text(session))

    def _require_active(self, session: Session) -> str:
        if session.state is _ACTIVE and session.username is not None:
            return session.username
        if session.state is _CLOSED:
            raise SessionClosed(self._closed_text(session))
        raise NotLoggedIn()

    @staticmethod
    def _closed_text(session: Session) -> str:
        reason = session.close_reason
        return f"session ended: {reason.value}" if reason else "session ended"

    def _unregister(self, session: Session, username: str) -> None:
        if session.account_id is None:
            return
        peers = self._live.get(session.account_id)
        if peers is not None:
            peers.discard(session)
            if not peers:
                del self._live[session.account_id]
                self.bus.unwatch(session.account_id)

    def _end(self, session: Session, reason: CloseReason) -> None:
        if session.closed:
            return
        if session.username is not None:
            self._unregister(session, session.username)
        session._end(reason)
        self._sessions.discard(session)


__all__ = [
    "PRUNE_INTERVAL",
    "ChatService",
    "could_match_a_username",
    "now_ms",
    "validate_username",
]
