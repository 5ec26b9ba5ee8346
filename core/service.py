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
  * delete_account (Rules 14-15): one store transaction removes the account, everything pending
    to it and, under the default PURGE policy, its undelivered messages to others; then every
    session of that user is ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from core import limits
from core.errors import (
    AlreadyLoggedIn,
    AuthFailed,
    ChatError,
    Forbidden,
    InvalidArgument,
    LimitExceeded,
    NotLoggedIn,
    SessionClosed,
    UsernameTaken,
)
from core.passwords import HashCost, Passwords
from core.session import Session, State
from core.store import DuplicateAccount, Store
from core.throttle import LoginThrottle
from core.types import (
    AccountPage,
    CloseReason,
    DeletedSenderPolicy,
    Delivery,
    LoginResult,
    SendResult,
)

log = logging.getLogger(__name__)

#: Message ids are SQLite integer keys: positive and below 2**63.
MAX_MESSAGE_ID = 2**63


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def validate_username(username: str) -> None:
    if not limits.USERNAME_RE.fullmatch(username):
        raise InvalidArgument(
            "a username is 1-32 characters of letters, digits, '_', '.' or '-'"
        )


def validate_password(password: str) -> None:
    size = len(password.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= limits.MAX_PASSWORD_BYTES:
        raise LimitExceeded(
            f"a password is 1-{limits.MAX_PASSWORD_BYTES} bytes of UTF-8 (got {size})"
        )


def glob_to_sqlite(pattern: str) -> str:
    """Our glob has only * and ?; escape SQLite GLOB's other special, '['."""
    return pattern.replace("[", "[[]")


class ChatService:
    def __init__(
        self,
        store: Store,
        *,
        deleted_sender: DeletedSenderPolicy = DeletedSenderPolicy.PURGE,
        hash_cost: HashCost = HashCost.DEFAULT,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.store = store
        self.deleted_sender = deleted_sender
        self._passwords = Passwords(hash_cost)
        self._throttle = throttle or LoginThrottle()
        self._live: dict[str, set[Session]] = {}
        self._sessions: set[Session] = set()

    # -- sessions ----------------------------------------------------------------------------
    def open_session(self) -> Session:
        session = Session()
        self._sessions.add(session)
        return session

    def close_session(
        self, session: Session, reason: CloseReason = CloseReason.DISCONNECTED
    ) -> None:
        """End a session for a transport reason (connection lost, too slow, shutting down)."""
        self._end(session, reason)

    def live_sessions(self, username: str) -> int:
        return len(self._live.get(username, ()))

    async def shutdown(self) -> None:
        for session in list(self._sessions):
            self._end(session, CloseReason.SHUTDOWN)

    # -- accounts (Rules 1-7) ----------------------------------------------------------------
    async def signup(self, session: Session, username: str, password: str) -> LoginResult:
        self._require_anonymous(session)
        try:
            validate_username(username)
            validate_password(password)
            if await self.store.password_hash(username) is not None:
                raise UsernameTaken(f"the username {username!r} is taken")
            password_hash = await self._passwords.hash(password)
            self._require_anonymous(session)  # the client may have gone while we hashed
            try:
                await self.store.create_account(username, password_hash, now_ms())
            except DuplicateAccount:
                raise UsernameTaken(f"the username {username!r} is taken") from None
        except ChatError:
            self._end(session, CloseReason.AUTH_FAILED)
            raise
        log.info("signup %s (session %d)", username, session.id)
        return await self._start(session, username)

    async def login(self, session: Session, username: str, password: str) -> LoginResult:
        self._require_anonymous(session)
        try:
            if len(username) > limits.MAX_USERNAME_CHARS * 4 or len(password) > 4096:
                raise AuthFailed()  # don't let junk into the throttle table or the hasher
            async with self._throttle.attempt(username):
                stored = await self.store.password_hash(username)
                if not await self._passwords.verify(stored, password):
                    raise AuthFailed()
            self._require_anonymous(session)
        except ChatError:
            self._end(session, CloseReason.AUTH_FAILED)
            raise
        return await self._start(session, username)

    async def logout(self, session: Session) -> None:
        username = self._require_active(session)
        self._unregister(session, username)
        session._logged_out()

    async def list_accounts(
        self, session: Session, pattern: str = "*", after: str = "", limit: int = 0
    ) -> AccountPage:
        self._require_active(session)
        if len(pattern) > limits.MAX_PATTERN_CHARS:
            raise LimitExceeded(f"a pattern is at most {limits.MAX_PATTERN_CHARS} characters")
        if len(after) > limits.MAX_USERNAME_CHARS * 4:
            raise LimitExceeded("the paging cursor is longer than any username")
        if limit < 0:
            raise InvalidArgument("the page size must not be negative")
        page_size = min(limit or limits.DEFAULT_PAGE_SIZE, limits.MAX_PAGE_SIZE)
        names = await self.store.list_accounts(
            glob_to_sqlite(pattern or "*"), after, page_size + 1
        )
        return AccountPage(tuple(names[:page_size]), more=len(names) > page_size)

    async def delete_account(self, session: Session, username: str) -> None:
        own = self._require_active(session)
        if username != own:
            raise Forbidden("you can delete only your own account")
        await self.store.delete_account(
            own, purge_sent=self.deleted_sender is DeletedSenderPolicy.PURGE
        )
        log.info("deleted account %s", own)
        for other in list(self._live.get(own, ())):
            self._end(other, CloseReason.ACCOUNT_DELETED)
        self._end(session, CloseReason.ACCOUNT_DELETED)

    # -- messages (Rules 8-13) ---------------------------------------------------------------
    async def send(self, session: Session, recipients: Sequence[str], body: str) -> SendResult:
        sender = self._require_active(session)
        names = self._validate_recipients(recipients)
        body_size = len(body.encode("utf-8", "surrogatepass"))
        if body_size == 0:
            raise InvalidArgument("a message body is at least 1 byte")
        if body_size > limits.MAX_BODY_BYTES:
            raise LimitExceeded(
                f"a message body is at most {limits.MAX_BODY_BYTES} bytes (got {body_size})"
            )
        sent_at = now_ms()
        message_id, stored = await self.store.add_message(sender, body, sent_at, names)
        unknown = tuple(name for name in names if name not in stored)
        if stored:
            delivery = Delivery(message_id, sender, body, sent_at)
            for name in stored:
                self._push(name, delivery)
        return SendResult(message_id, sent_at, unknown)

    async def ack(self, session: Session, message_ids: Sequence[int]) -> None:
        username = self._require_active(session)
        if len(message_ids) > limits.MAX_ACK_IDS:
            raise LimitExceeded(f"at most {limits.MAX_ACK_IDS} ids per ack")
        # Ids the store cannot hold (SQLite integers are signed 64-bit) cannot be pending.
        valid = [mid for mid in message_ids if 0 < mid < MAX_MESSAGE_ID]
        if valid:
            await self.store.mark_delivered(username, valid)

    # -- internals ---------------------------------------------------------------------------
    def _validate_recipients(self, recipients: Sequence[str]) -> list[str]:
        names = list(recipients)
        if not names:
            raise InvalidArgument("name at least one recipient")
        if len(names) > limits.MAX_RECIPIENTS:
            raise LimitExceeded(
                f"at most {limits.MAX_RECIPIENTS} recipients per message (got {len(names)})"
            )
        if len(set(names)) != len(names):
            raise InvalidArgument("each recipient may be named only once")
        if any(len(name) > limits.MAX_USERNAME_CHARS * 4 for name in names):
            raise LimitExceeded("a recipient name is longer than any username")
        return names

    def _push(self, username: str, delivery: Delivery) -> None:
        for session in list(self._live.get(username, ())):
            if not session._push(delivery):
                log.warning("session %d of %s is too slow; disconnecting", session.id, username)
                self._end(session, CloseReason.SLOW_CONSUMER)

    async def _start(self, session: Session, username: str) -> LoginResult:
        pending = await self.store.pending_count(username)
        session._logged_in(username, self.store)
        self._live.setdefault(username, set()).add(session)
        return LoginResult(username, pending)

    def _require_anonymous(self, session: Session) -> None:
        if session.state is State.ACTIVE:
            raise AlreadyLoggedIn()
        if session.state is State.CLOSED:
            raise SessionClosed(self._closed_text(session))

    def _require_active(self, session: Session) -> str:
        if session.state is State.ACTIVE and session.username is not None:
            return session.username
        if session.state is State.CLOSED:
            raise SessionClosed(self._closed_text(session))
        raise NotLoggedIn()

    @staticmethod
    def _closed_text(session: Session) -> str:
        reason = session.close_reason
        return f"session ended: {reason.value}" if reason else "session ended"

    def _unregister(self, session: Session, username: str) -> None:
        peers = self._live.get(username)
        if peers is not None:
            peers.discard(session)
            if not peers:
                del self._live[username]

    def _end(self, session: Session, reason: CloseReason) -> None:
        if session.closed:
            return
        if session.username is not None:
            self._unregister(session, session.username)
        session._end(reason)
        self._sessions.discard(session)


__all__ = ["ChatService", "now_ms", "validate_password", "validate_username"]
