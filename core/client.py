"""The one client API, with the client-side session rules decided once, above the transports.

The console, the web gateway, the bench and the conformance suite use only :class:`ChatClient`,
so they run unchanged over any transport. A transport contributes a :class:`ClientTransport`,
which does three things only: connect, carry a request and return its reply (or raise the
``core.errors`` error its wire reply maps to, in one place of its own), and hand over what the
server pushes through :class:`ClientEvents`. (httpx's ``Client`` over its one-method
``BaseTransport`` is the model.)

The rules, in the order ``ChatClient`` applies them
  1. A call on a client whose session the server ended raises ``SessionClosed``; on a client
     whose connection is gone (or never made), ``ConnectionError``.
  2. Checks the server would make anyway, answered here without a round trip: a command that
     needs a session on a client that is not logged in raises ``NotLoggedIn`` first, then
     the argument checks the wire cannot even carry (no recipients, too many recipients, too
     many ack ids, a negative page size). Ack ids out of the unsigned 64-bit range cannot name
     a message and are dropped; an ack with no ids left sends nothing.
  3. What a reply does to the client: a successful signup/login/resume logs it in (and keeps
     the reply's resume token, as does a password change), a logout logs it out; a failed
     signup/login/resume (any domain error but ``AlreadyLoggedIn``) ends the session
     (Rule 4: reconnect to try again); a successful ``delete_account`` ends it (Rule 14); a
     ``SessionClosed`` reply ends it. A call that gets no reply (the connection broke, a
     deadline) changes nothing. A session-changing call cancelled while in flight leaves the
     session in a state the client cannot know: the client is closed.
  4. Incoming messages: ``messages()`` yields each :class:`Delivery` once (duplicate ids are
     dropped, Rule 11) and acks it as it hands it over, unless ``auto_ack=False``.
  5. When the server ends the session or the connection goes, ``closed_reason`` says why (None
     when we closed it ourselves) and ``messages()`` ends.
  6. Notices (Rules 22-24: "sent by you" copies, read marks from other devices, "these ids are
     gone") arrive in order with deliveries. ``events()`` yields both; ``messages()`` yields
     deliveries only. Read one of the two per client, not both.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar

from core import requests as rq
from core.errors import (
    AlreadyLoggedIn,
    ChatError,
    InvalidArgument,
    LimitExceeded,
    NotLoggedIn,
    SessionClosed,
)
from core.limits import MAX_ACK_IDS, MAX_DELETE_IDS, MAX_RECIPIENTS
from core.types import (
    AccountPage,
    CloseReason,
    ConversationPage,
    Delivery,
    HistoryPage,
    LoginResult,
    Notice,
    PasswordChanged,
    ReadMarker,
    SendResult,
    SessionEvent,
)

#: How many recent message ids a client remembers to drop duplicates (Rule 11). Duplicates
#: only arise when a message is re-sent after a reconnect, so a few thousand is plenty.
DEDUP_WINDOW = 4096
U64_MAX = 2**64 - 1
_new = object.__new__

R = TypeVar("R")


class ClientEvents(Protocol):
    """What a transport reports to its ChatClient (called on the event loop, never blocking)."""

    def delivered(self, delivery: Delivery) -> None:
        """The server pushed a message."""

    def notified(self, notice: Notice) -> None:
        """The server pushed a notice: SentCopy, ReadMarker or MessagesDeleted (Rules 22-24)."""

    def session_ended(self, reason: str) -> None:
        """The server ended the session (deleted elsewhere, too slow, shutting down, ...)."""

    def connection_lost(self, reason: str | None) -> None:
        """The connection is gone; ``None`` when the client closed it itself."""


class ClientTransport(Protocol):
    """A transport's client side: connect, carry requests, hand over pushes."""

    async def connect(self, events: ClientEvents) -> None:
        """Open the connection (and any handshake); OSError/ConnectionError if unreachable."""

    def request(self, request: rq.Request[R]) -> Awaitable[R]:
        """Send ``request`` and return its reply's result, or raise the ``ChatError`` the
        reply maps to, or ``ConnectionError`` when no reply can come. (An ``async def``
        fits; a transport may also return a Future it resolves itself, which saves a
        coroutine per call on the hot path.)"""

    async def close(self) -> None:
        """Close the connection; idempotent. Reports ``connection_lost(None)`` if still open."""


class ChatClient:
    """Async chat client over one transport. Use ``async with`` or call connect()/close()."""

    def __init__(self, transport: ClientTransport, *, auto_ack: bool = True) -> None:
        self.transport = transport
        self.auto_ack = auto_ack
        self.closed_reason: str | None = None  # why the server ended the session/connection
        self._incoming: asyncio.Queue[SessionEvent | None] = asyncio.Queue()
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._connected = False
        self._logged_in = False
        self._session_end: str | None = None  # set: new calls raise SessionClosed
        self._lost: str | None = None  # set: new calls raise ConnectionError
        self._ended = False  # messages() has been told
        self._resume_token = ""  # the latest one the server gave (signup/login/resume/change)
        #: connect() was called and neither _session_end nor _lost is set: the one flag the hot
        #: path reads (it only ever goes from True to False once connect() set it).
        self._usable = False

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the connection (and do any handshake). Raises OSError if unreachable."""
        if self._connected:
            raise RuntimeError("connect() was already called; open a new client to reconnect")
        self._connected = True
        self._usable = self._session_end is None and self._lost is None
        await self.transport.connect(self)

    async def close(self) -> None:
        """Close the connection; idempotent. Ends the messages() iterator."""
        if self._lost is None:
            self._lost = "closed by the client"
        self._usable = False
        await self.transport.close()
        self._end_messages()

    async def __aenter__(self) -> ChatClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def logged_in(self) -> bool:
        return self._logged_in

    @property
    def resume_token(self) -> str:
        """The latest resume token the server issued to this client ("" if none): pass it to
        :meth:`resume` on a new client to log in again without the password. A secret."""
        return self._resume_token

    # -- commands (each raises a core.errors.ChatError subclass on a domain error) ----------
    async def signup(self, username: str, password: str) -> LoginResult:
        return await self._call(rq.Signup(username, password))

    async def login(self, username: str, password: str) -> LoginResult:
        return await self._call(rq.Login(username, password))

    async def logout(self) -> None:
        await self._call(rq.Logout())

    async def list_accounts(
        self, pattern: str = "*", after: str = "", limit: int = 0
    ) -> AccountPage:
        """Accounts matching the glob, sorted, names strictly after ``after``; limit 0 = default."""
        if limit < 0:
            self._require_session()
            raise InvalidArgument("the page size must not be negative")
        return await self._call(rq.ListAccounts(pattern, after, limit))

    async def send(self, recipients: Sequence[str], body: str) -> SendResult:
        """Send ``body`` to ``recipients``; returns the SendResult.

        ``_call`` written out, for speed (the hottest call, issue 8): one coroutine and no
        session bookkeeping after the reply, since a SEND's reply never changes the session."""
        names = tuple(recipients)
        if not self._usable:
            self._require_connection()  # raises
        if not names or len(names) > MAX_RECIPIENTS:
            self._require_session()
            if not names:
                raise InvalidArgument("name at least one recipient")
            raise LimitExceeded(
                f"at most {MAX_RECIPIENTS} recipients per message (got {len(names)})"
            )
        # rq.Send(names, body) without type.__call__ and its __init__ frame (~1,800 of a
        # send's ~80,000 instructions, ~1,150 this way). Every field is set here: a field
        # added to rq.Send must be too (tests/unit/test_client_send.py compares the two).
        request = _new(rq.Send)
        request.recipients = names
        request.body = body
        try:
            return await self.transport.request(request)
        except ChatError as exc:
            self._refused(request, exc)
            raise

    async def ack(self, message_ids: Sequence[int]) -> None:
        """Tell the server these messages reached the application (Rule 11)."""
        self._require_session()
        if len(message_ids) > MAX_ACK_IDS:
            raise LimitExceeded(f"at most {MAX_ACK_IDS} ids per ack (got {len(message_ids)})")
        ids = tuple(sorted({i for i in message_ids if 0 <= i <= U64_MAX}))
        if ids:
            await self._call(rq.Ack(ids))

    async def delete_account(self, username: str, password: str = "") -> None:
        """Delete the logged-in account; ``username`` must be its own name (Rule 14) and
        ``password`` its password (issue 13: without it the server refuses, AuthFailed)."""
        await self._call(rq.DeleteAccount(username, password))

    # -- account security (issue 13) -------------------------------------------------------
    async def resume(self, token: str) -> LoginResult:
        """Log in with the resume token of an earlier login (``resume_token``), without the
        password; pending messages follow as after a login. A refused token (ResumeRefused)
        ends the session like a failed login: connect a new client and log in."""
        return await self._call(rq.Resume(token))

    async def change_password(
        self, old_password: str, new_password: str, end_other_sessions: bool = True
    ) -> PasswordChanged:
        """Change this account's password. With ``end_other_sessions`` the account's other
        sessions end and every resume token is revoked; this session stays, with a new
        token either way (``resume_token``). A wrong old password raises AuthFailed and
        changes nothing; a weak new one raises WeakPassword."""
        return await self._call(rq.ChangePassword(old_password, new_password, end_other_sessions))

    # -- history (Rules 19-25) -------------------------------------------------------------
    async def list_conversations(self, before_id: int = 0, limit: int = 0) -> ConversationPage:
        """The conversations, most recent first, each with its last message and unread
        count; page on with ``before_id=page.conversations[-1].last_message.message_id``."""
        self._check_paging(before_id, limit)
        return await self._call(rq.ListConversations(before_id, limit))

    async def read_history(
        self,
        participants: Sequence[str] = (),
        before_id: int = 0,
        limit: int = 0,
        *,
        conversation_id: int = 0,
    ) -> HistoryPage:
        """One conversation, newest first, by its other participants' names or by its id;
        page on with ``before_id=page.messages[-1].message_id``."""
        self._check_paging(before_id, limit)
        if conversation_id and participants:
            raise InvalidArgument("name the conversation by its id or by its participants")
        return await self._call(
            rq.ReadHistory(tuple(participants), before_id, limit, conversation_id)
        )

    async def mark_read(self, conversation_id: int, up_to_id: int) -> ReadMarker:
        """Mark the conversation read up to ``up_to_id`` (Rule 22); your other devices are
        told. Returns the mark and the unread count after it."""
        return await self._call(rq.MarkRead(conversation_id, up_to_id))

    async def delete_messages(self, message_ids: Sequence[int], for_everyone: bool = False) -> None:
        """Delete messages from your history, or, as their sender, for everyone (Rule 23)."""
        self._require_session()
        if len(message_ids) > MAX_DELETE_IDS:
            raise LimitExceeded(f"at most {MAX_DELETE_IDS} ids per delete (got {len(message_ids)})")
        ids = tuple(sorted({i for i in message_ids if 0 <= i <= U64_MAX}))
        if ids:
            await self._call(rq.DeleteMessages(ids, for_everyone))

    # -- incoming --------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[SessionEvent]:
        """Yield incoming deliveries and notices, in the server's order, until the
        connection closes. Deliveries are acked as they are handed over (unless
        ``auto_ack=False``), as by :meth:`messages`."""
        while True:
            item = await self._incoming.get()
            if item is None:
                self._incoming.put_nowait(None)  # keep the end marker for other readers
                return
            if isinstance(item, Delivery) and self.auto_ack:
                try:
                    await self.ack((item.message_id,))
                except (ChatError, ConnectionError):
                    pass  # the session ended meanwhile: the message stays pending, still show it
            yield item

    async def next_event(self, timeout: float) -> SessionEvent:
        """The next incoming delivery or notice, or TimeoutError."""
        async with asyncio.timeout(timeout):
            async for event in self.events():
                return event
        raise ConnectionError(f"connection closed: {self.closed_reason or 'no reason given'}")

    async def messages(self) -> AsyncIterator[Delivery]:
        """Yield incoming messages until the connection closes (notices are skipped)."""
        async for item in self.events():
            if isinstance(item, Delivery):
                yield item

    async def next_message(self, timeout: float) -> Delivery:
        """The next incoming message, or TimeoutError; a convenience for tests and tools."""
        async with asyncio.timeout(timeout):
            async for message in self.messages():
                return message
        raise ConnectionError(f"connection closed: {self.closed_reason or 'no reason given'}")

    # -- ClientEvents (called by the transport) --------------------------------------------
    def delivered(self, delivery: Delivery) -> None:
        if delivery.message_id in self._seen:
            return
        self._seen[delivery.message_id] = None
        if len(self._seen) > DEDUP_WINDOW:
            self._seen.popitem(last=False)
        self._incoming.put_nowait(delivery)

    def notified(self, notice: Notice) -> None:
        self._incoming.put_nowait(notice)

    def session_ended(self, reason: str) -> None:
        self._logged_in = False
        self._usable = False
        if self._session_end is None:
            self._session_end = reason
        if self.closed_reason is None:
            self.closed_reason = reason
        self._end_messages()

    def connection_lost(self, reason: str | None) -> None:
        self._logged_in = False
        self._usable = False
        if self._lost is None:
            self._lost = reason or "closed by the client"
        if reason is not None and self.closed_reason is None:
            self.closed_reason = reason
        self._end_messages()

    # -- the rules -------------------------------------------------------------------------
    async def _call(self, request: rq.Request[R]) -> R:
        if not self._usable:
            self._require_connection()  # raises
        try:
            result = await self.transport.request(request)
        except ChatError as exc:
            self._refused(request, exc)
            raise
        except asyncio.CancelledError:
            if request.changes_session:
                await asyncio.shield(self.close())  # its outcome is unknowable: start afresh
            raise
        if request.changes_session:  # (most requests change nothing: skip the checks)
            self._answered(request, result)
        return result

    def _answered(self, request: rq.Request[Any], result: object) -> None:
        if isinstance(request, rq.Signup | rq.Login | rq.Resume):
            self._logged_in = True
            if isinstance(result, LoginResult) and result.resume_token:
                self._resume_token = result.resume_token
        elif isinstance(request, rq.ChangePassword):
            if isinstance(result, PasswordChanged) and result.resume_token:
                self._resume_token = result.resume_token
        elif isinstance(request, rq.Logout):
            self._logged_in = False
            self._resume_token = ""  # revoked by the server
        elif isinstance(request, rq.DeleteAccount):
            self._resume_token = ""
            self.session_ended(CloseReason.ACCOUNT_DELETED.value)

    def _refused(self, request: rq.Request[Any], exc: ChatError) -> None:
        if isinstance(exc, SessionClosed):
            self.session_ended(str(exc).removeprefix("session ended: "))
        elif isinstance(request, rq.Signup | rq.Login | rq.Resume) and not isinstance(
            exc, AlreadyLoggedIn
        ):
            self.session_ended(CloseReason.AUTH_FAILED.value)

    def _require_connection(self) -> None:
        if self._session_end is not None:
            raise SessionClosed(f"session ended: {self._session_end}")
        if not self._connected or self._lost is not None:
            raise ConnectionError(f"not connected: {self._lost or 'call connect() first'}")

    def _require_session(self) -> None:
        """The check the service makes first, for the calls answered without the server."""
        self._require_connection()
        if not self._logged_in:
            raise NotLoggedIn()

    def _check_paging(self, before_id: int, limit: int) -> None:
        if limit < 0 or before_id < 0:
            self._require_session()
            raise InvalidArgument("page sizes and cursors are not negative")

    def _end_messages(self) -> None:
        if not self._ended:
            self._ended = True
            self._incoming.put_nowait(None)


__all__ = ["DEDUP_WINDOW", "ChatClient", "ClientEvents", "ClientTransport"]
