"""The gateway's chat commands: the synchronous face that Flask's request threads call, each
run on the gateway's loop with a bounded timeout, and the one seam where their failures
become a :class:`~ui.web.chat_session.GatewayError` for the pages (see :mod:`ui.web.gateway`,
which mixes :class:`Commands` into its ``Gateway``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from core.errors import ChatError, SessionClosed
from core.types import (
    AccountPage,
    ConversationPage,
    Delivery,
    HistoryPage,
    PasswordChanged,
    ReadMarker,
    SendResult,
)
from ui.web.chat_session import ChatSession, GatewayError, Limits
from ui.web.history import HISTORY_PAGE, SIDEBAR_PAGE
from ui.web.loop import LoopThread
from ui.web.patience import retry_shed

T = TypeVar("T")


class Commands:
    """A signed-in session's commands (mixed into ``ui.web.gateway.Gateway``, which provides
    the loop, the limits and how a session ends)."""

    _loop: LoopThread
    limits: Limits

    def _end(self, chat: ChatSession, reason: str) -> None:
        """Forget a session from a request thread and close its client (the gateway's)."""
        raise NotImplementedError

    def send(self, chat: ChatSession, recipients: Sequence[str], body: str) -> SendResult:
        """Send; every open page of this browser session shows the message (the server
        copies it to the user's other devices itself, Rule 24)."""
        names = tuple(recipients)

        async def send() -> SendResult:
            result = await chat.client.send(names, body)
            unknown = set(result.unknown_recipients)
            known = [n for n in names if n not in unknown]
            if known:
                others = tuple(sorted({n for n in known if n != chat.username}))
                mine = Delivery(
                    result.message_id,
                    chat.username,
                    body,
                    result.sent_at_ms,
                    participants=others,
                    conversation_id=result.conversation_id,
                )
                chat.feed.message(mine, mine=True)
                chat.dirty.set()
            return result

        return self._call(chat, send)

    def conversations(self, chat: ChatSession, before_id: int = 0) -> ConversationPage:
        """A page of conversations (most recent first) with the server's unread counts."""

        async def list_page() -> ConversationPage:
            page = await chat.client.list_conversations(before_id, SIDEBAR_PAGE)
            if not before_id:  # the freshest list: every open page of this session shows it
                chat.feed.set_snapshot(page)
            return page

        return self._call(chat, list_page)

    def history(
        self,
        chat: ChatSession,
        *,
        conversation_id: int = 0,
        participants: Sequence[str] = (),
        before_id: int = 0,
    ) -> HistoryPage:
        """One page of a conversation's history, newest first."""

        async def read() -> HistoryPage:
            return await chat.client.read_history(
                tuple(participants), before_id, HISTORY_PAGE, conversation_id=conversation_id
            )

        return self._call(chat, read)

    def open_thread(
        self, chat: ChatSession, *, conversation_id: int = 0, participants: Sequence[str] = ()
    ) -> tuple[HistoryPage, ConversationPage]:
        """What a conversation's page needs, in one trip to the loop: its newest history,
        marked read up to its newest message (Rule 22), then the conversation list, so
        the sidebar already counts it read."""

        async def load() -> tuple[HistoryPage, ConversationPage]:
            page = await chat.client.read_history(
                tuple(participants), 0, HISTORY_PAGE, conversation_id=conversation_id
            )
            if page.conversation_id and page.messages:
                newest = page.messages[0].message_id
                if newest > page.read_up_to:
                    await chat.client.mark_read(page.conversation_id, newest)
                    chat.dirty.set()  # the browser's other tabs
            conversations = await chat.client.list_conversations(0, SIDEBAR_PAGE)
            chat.feed.set_snapshot(conversations)  # the freshest: every open page shows it
            return page, conversations

        return self._call(chat, load)

    def mark_read(self, chat: ChatSession, conversation_id: int, up_to_id: int) -> ReadMarker:
        """Mark read (Rule 22); the user's other devices are told by the server, this
        browser's other tabs by the refreshed sidebar."""

        async def mark() -> ReadMarker:
            marker = await chat.client.mark_read(conversation_id, up_to_id)
            chat.dirty.set()
            return marker

        return self._call(chat, mark)

    def delete_messages(
        self, chat: ChatSession, message_ids: Sequence[int], for_everyone: bool
    ) -> None:
        """Delete messages (Rule 23); the server tells every live session which ids went,
        this one included, and the pump passes that to every open page."""
        self._call(chat, chat.client.delete_messages, tuple(message_ids), for_everyone)

    def list_accounts(
        self, chat: ChatSession, pattern: str, after: str = "", limit: int = 0
    ) -> AccountPage:
        return self._call(chat, chat.client.list_accounts, pattern, after, limit)

    def change_password(
        self, chat: ChatSession, old: str, new: str, *, end_other_sessions: bool
    ) -> PasswordChanged:
        """Change the password (a wrong old one or a weak new one: GatewayError); with
        ``end_other_sessions`` the account's other sessions are signed out, this one stays."""
        return self._call(chat, chat.client.change_password, old, new, end_other_sessions)

    # -- the error seam --------------------------------------------------------------------
    def _call(self, chat: ChatSession, method: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run one client command on the loop; map transport failures for the pages."""

        async def command() -> T:
            return await retry_shed(lambda: method(*args))  # a shed command did nothing

        try:
            return self._loop.run(command(), self.limits.command_timeout)
        except SessionClosed as exc:
            self._end(chat, str(exc))
            raise GatewayError(f"You were signed out: {exc}", signed_out=True) from exc
        except ChatError as exc:  # the server refused the command; its text is for a person
            raise GatewayError(str(exc)) from exc
        except TimeoutError as exc:
            raise GatewayError("the chat server did not answer in time; try again") from exc
        except (ConnectionError, OSError) as exc:
            self._end(chat, "the connection to the chat server was lost")
            raise GatewayError(
                "the connection to the chat server was lost; log in again", signed_out=True
            ) from exc


__all__ = ["Commands"]
