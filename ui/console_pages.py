"""The console's paged views: /list, /conversations, /history and /more.

Each keeps its cursor in :class:`ui.console.Chat`, so ``/more`` continues whichever listing
came last; the text comes from ``ui.console_format``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.client import ChatClient
from core.types import HistoryPage
from ui.console_commands import HISTORY_DEFAULT, History
from ui.console_format import format_accounts, format_conversations, format_history

if TYPE_CHECKING:
    from ui.console import Chat, Console

#: Conversations per /conversations page.
CONVERSATIONS_PAGE_SIZE = 20


async def more(console: Console, client: ChatClient, chat: Chat) -> None:
    """The next page of the last /list, /conversations or /history."""
    if chat.more == "conversations" and chat.conversations_before:
        await conversations_page(console, client, chat)
    elif chat.more == "history" and chat.history is not None and chat.history_before:
        await _history_page(console, client, chat, chat.history, chat.history_before)
    elif chat.more == "accounts" and chat.listing_pattern is not None and chat.listing_more:
        await list_page(console, client, chat)
    else:
        console.write("Nothing more to show; /list, /conversations and /history start a listing.")


async def conversations_page(console: Console, client: ChatClient, chat: Chat) -> None:
    first = chat.conversations_before == 0
    page = await client.list_conversations(chat.conversations_before, CONVERSATIONS_PAGE_SIZE)
    console.write(format_conversations(page, me=chat.username, first=first))
    chat.conversations_before = page.conversations[-1].last_message.message_id if page.more else 0


async def history(console: Console, client: ChatClient, chat: Chat, wanted: History) -> None:
    if not wanted.recipients and not wanted.conversation_id:
        if not chat.peers:
            console.write("Which conversation? /history NAMES or /history #ID (/conversations).")
            return
        wanted = History(recipients=chat.peers, count=wanted.count)
    chat.more, chat.history = "history", wanted
    page = await _history_page(console, client, chat, wanted, 0)
    if page.conversation_id and page.messages:
        # Reading it here is reading it (Rule 22): other devices' counts follow.
        await client.mark_read(page.conversation_id, page.messages[0].message_id)
    # The conversation becomes the current one; a deleted member's name is left out,
    # since it may belong to someone else now (Rule 19).
    live = tuple(p for p in page.participants if p not in page.deleted_participants)
    if live:
        chat.peers = live
    elif not page.participants and page.conversation_id:
        chat.peers = (chat.username,)


async def _history_page(
    console: Console, client: ChatClient, chat: Chat, wanted: History, before: int
) -> HistoryPage:
    page = await client.read_history(
        wanted.recipients,
        before,
        wanted.count or HISTORY_DEFAULT,
        conversation_id=wanted.conversation_id,
    )
    console.write(format_history(page, me=chat.username, older=before != 0))
    chat.history_before = page.messages[-1].message_id if page.more else 0
    return page


async def list_page(console: Console, client: ChatClient, chat: Chat) -> None:
    assert chat.listing_pattern is not None
    page = await client.list_accounts(chat.listing_pattern, chat.listing_after, console.page_size)
    console.write(format_accounts(chat.listing_pattern, page, chat.listing_next))
    chat.listing_more = page.more
    if page.usernames:
        chat.listing_after = page.usernames[-1]
        chat.listing_next += len(page.usernames)
