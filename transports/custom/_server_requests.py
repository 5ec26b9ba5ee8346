"""The requests and pushes of one custom-protocol server connection: what each request asks of
``ChatService`` and the reply it gets, and the pump that turns a session's deliveries and
notices into push frames (section numbers refer to PROTOCOL.md).

A mixin of ``_server._ServerConnection`` (it shares the connection's state; ``_server`` has the
theory of operation). Each handler calls the service and returns the reply, with no await
after the service call, so the reply is written before the pump can observe what the call
changed (LOGGED_IN before the login's first DELIVER).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, cast

from core import types as ct
from core.errors import AuthFailed
from core.frozen import builder
from core.service import ChatService
from core.session import Session
from core.types import Delivery
from transports._outbox import Outbox
from transports.custom._codec import Codec
from transports.custom._events import (
    Accounts,
    Ack,
    Conversations,
    DeleteAccount,
    Deleted,
    DeleteMessages,
    Deliver,
    History,
    ListAccounts,
    ListConversations,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    MarkedRead,
    MarkRead,
    MessagesGone,
    Ping,
    Pong,
    ReadHistory,
    ReadMark,
    Removed,
    Sent,
    SentCopy,
    SignedUp,
    Signup,
)
from transports.custom._security import ChangePassword, PasswordChanged, Resume
from transports.custom._wire import MAX_DELETE_IDS, ErrorCode, LocalProtocolError

log = logging.getLogger(__name__)

#: The answer (AUTH_FAILED) to a DELETE_ACCOUNT of a version 1 or 2 connection, which has no
#: password field: deletion asks for the password since version 3 (PROTOCOL.md section 6.8).
OLD_DELETE = "deleting an account now needs your password; update your client"

#: ``Sent(...)`` and ``Deliver(...)`` at a third of their cost: one per send, one per push
#: (SENT is built by ``_server``, which serves SEND itself).
_sent: Callable[..., Sent] = builder(Sent)
_new_deliver: Callable[..., Deliver] = builder(Deliver)


def _deliver(d: Delivery) -> Deliver:
    """The DELIVER of a delivery (a version 1 codec writes only its first four fields)."""
    return _new_deliver(
        d.message_id,
        d.sent_at_ms,
        d.sender,
        d.body,
        d.participants,
        d.sender_deleted,
        d.conversation_id,
    )


class Requests:
    """The request handlers and the delivery pump of ``_server._ServerConnection``."""

    if TYPE_CHECKING:  # what the connection provides
        _loop: asyncio.AbstractEventLoop
        _peer: Any
        _codec: Codec
        _outbox: Outbox
        _service: ChatService
        _session: Session
        _closing: bool
        _epoch: int
        _idle_since: float | None
        _pumps: set[asyncio.Task[None]]

        def _reply(self, event: Any) -> None: ...
        def _push(self, event: Any) -> None: ...
        def _waiting(self, waiting: bool) -> None: ...
        async def _writable(self) -> bool: ...
        def _slow_consumer(self) -> None: ...
        def _session_ended(self, *, notice: bool) -> None: ...
        def _end_with(self, code: ErrorCode, message: str) -> None: ...

    def _request_handlers(self) -> dict[type, Any]:
        """Request type -> handler. Built at a connection's first request, not with the
        connection: a dozen bound methods were a third of what an idle connection held (objects
        the collector walks, 20,000 idle connections in the hostile scene)."""
        return {
            Signup: self._signup,
            Login: self._login,
            Logout: self._logout,
            ListAccounts: self._list_accounts,
            # (SEND is served in ``_server._ServerConnection._serve`` itself: the hot path)
            Ack: self._ack,
            DeleteAccount: self._delete_account,
            Ping: self._ping,
            ListConversations: self._list_conversations,
            ReadHistory: self._read_history,
            MarkRead: self._mark_read,
            DeleteMessages: self._delete_messages,
            Resume: self._resume,
            ChangePassword: self._change_password,
        }

    # -- version 1 (sections 6.1-6.9) --------------------------------------------------------
    async def _signup(self, event: Signup) -> SignedUp:
        result = await self._service.signup(self._session, event.username, event.password)
        self._start_pump()
        return SignedUp(event.request_id, result.pending, result.resume_token)

    async def _login(self, event: Login) -> LoggedIn:
        result = await self._service.login(self._session, event.username, event.password)
        self._start_pump()
        return LoggedIn(event.request_id, result.pending, result.resume_token, result.username)

    async def _logout(self, event: Logout) -> LoggedOut:
        await self._service.logout(self._session)
        self._epoch += 1  # no DELIVER of the ended login may follow LOGGED_OUT
        self._idle_since = self._loop.time()
        self._waiting(True)
        return LoggedOut(event.request_id)

    # (LIST_ACCOUNTS and ACK are paced per session by the service, core.pacing: a paced one
    # suspends, and the connection is not read while a request is in progress)
    async def _list_accounts(self, event: ListAccounts) -> Accounts:
        page = await self._service.list_accounts(
            self._session, event.pattern, event.after, event.limit
        )
        return Accounts(event.request_id, page.usernames, page.more)

    async def _ack(self, event: Ack) -> None:
        await self._service.ack(self._session, event.message_ids)

    async def _delete_account(self, event: DeleteAccount) -> Deleted:
        if (self._codec.version or 1) < 3:  # its DELETE_ACCOUNT has no password field: the
            try:  # service refuses it (after its other checks: NOT_LOGGED_IN, FORBIDDEN)
                await self._service.delete_account(self._session, event.username, "")
            except AuthFailed:
                raise AuthFailed(OLD_DELETE) from None
        await self._service.delete_account(self._session, event.username, event.password)
        return Deleted(event.request_id)

    async def _ping(self, event: Ping) -> Pong:
        return Pong(event.request_id, event.payload)

    # -- version 2 (sections 6.10-6.13) ------------------------------------------------------
    async def _list_conversations(self, event: ListConversations) -> bytes:
        page = await self._service.list_conversations(self._session, event.before_id, event.limit)
        return self._fitted(Conversations(event.request_id, page.conversations, page.more))

    async def _read_history(self, event: ReadHistory) -> bytes:
        page = await self._service.read_history(
            self._session, event.participants, event.before_id, event.limit, event.conversation_id
        )
        return self._fitted(
            History(
                event.request_id,
                page.conversation_id,
                page.participants,
                page.messages,
                page.more,
                page.deleted_participants,
                page.read_up_to,
            )
        )

    async def _mark_read(self, event: MarkRead) -> MarkedRead:
        marker = await self._service.mark_read(self._session, event.conversation_id, event.up_to_id)
        return MarkedRead(event.request_id, marker.conversation_id, marker.up_to_id, marker.unread)

    async def _delete_messages(self, event: DeleteMessages) -> Removed:
        await self._service.delete_messages(self._session, event.message_ids, event.for_everyone)
        return Removed(event.request_id)

    def _fitted(self, page: Conversations | History) -> bytes:
        """The frame of a page, cut short (``more`` set) until it fits in one frame
        (sections 7.11, 7.12: 64 KiB bodies)."""
        items = "conversations" if isinstance(page, Conversations) else "messages"
        while True:
            try:
                return self._codec.send(page)
            except LocalProtocolError as exc:
                kept = getattr(page, items)
                if exc.code is not ErrorCode.FRAME_TOO_LARGE or len(kept) <= 1:
                    raise
                page = dataclasses.replace(page, **{items: kept[: len(kept) // 2], "more": True})

    # -- version 3 (sections 6.14, 6.15) -----------------------------------------------------
    async def _resume(self, event: Resume) -> LoggedIn:
        result = await self._service.resume(self._session, event.token)
        self._start_pump()
        return LoggedIn(event.request_id, result.pending, result.resume_token, result.username)

    async def _change_password(self, event: ChangePassword) -> PasswordChanged:
        changed = await self._service.change_password(
            self._session, event.old_password, event.new_password, event.end_other_sessions
        )
        return PasswordChanged(event.request_id, changed.resume_token, changed.sessions_ended)

    # -- deliveries --------------------------------------------------------------------------
    def _start_pump(self) -> None:
        """A login began: drain its session into push frames, in a task of its own."""
        self._idle_since = None  # logged in
        self._waiting(False)  # (never evicted from now on)
        self._epoch += 1
        for old in self._pumps:
            old.cancel()
        pump = self._loop.create_task(self._pump(self._epoch), name=f"custom-pump-{self._peer}")
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)

    async def _pump(self, epoch: int) -> None:
        """The stored backlog, then live pushes: on a version 2 connection every event of
        ``session.events()``, on a version 1 connection DELIVER alone (section 5)."""
        session = self._session
        v2 = (self._codec.version or 1) >= 2
        try:
            # (both are async generators: close the stream when the pump stops early)
            stream = cast(
                "AsyncGenerator[ct.SessionEvent, None]",
                session.events() if v2 else session.deliveries(),
            )
            async with contextlib.aclosing(stream) as events:
                async for d in events:
                    if epoch != self._epoch or self._closing:
                        return
                    if type(d) is Delivery:
                        self._push(_deliver(d))
                    else:
                        self._notice(d)
                    if self._outbox.paused and not await self._writable():
                        self._slow_consumer()
                        return
            if session.closed and epoch == self._epoch:
                self._session_ended(notice=True)
        except ConnectionError:
            pass
        except Exception:
            log.exception("delivery to %s failed", self._peer)
            self._end_with(ErrorCode.INTERNAL, "internal server error")

    def _notice(self, notice: Any) -> None:
        """A version 2 push besides DELIVER (section 7.13-7.15)."""
        if isinstance(notice, ct.SentCopy):
            self._push(SentCopy(_deliver(notice.message)))
        elif isinstance(notice, ct.ReadMarker):
            self._push(ReadMark(notice.conversation_id, notice.up_to_id, notice.unread))
        elif isinstance(notice, ct.MessagesDeleted):
            ids = tuple(sorted(set(notice.message_ids)))
            for start in range(0, len(ids), MAX_DELETE_IDS):  # (an account purge: many)
                self._push(MessagesGone(ids[start : start + MAX_DELETE_IDS]))


__all__ = ["OLD_DELETE", "Requests"]
