"""The console's account commands (issue 13): /passwd and /delete-account.

Both ask for the password again, without echo and without history (the console's login
prompt), and both give way at once if the session ends under a prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.client import ChatClient
from ui.console_format import clean

if TYPE_CHECKING:
    from ui.console import Chat, Console


async def change_password(console: Console, client: ChatClient, chat: Chat) -> bool:
    """``/passwd``: ask the old password, the new one twice, and whether to sign out the
    account's other sessions; then change it. False if the session ended under a prompt.
    A refusal (wrong old password, a weak new one) is raised as the server's ChatError."""
    old = await console.ask_in_chat(chat, "Current password: ", password=True)
    if old is None:
        return False
    if not old:
        console.write("Not changed.")
        return True
    new = await console.ask_in_chat(chat, "New password: ", password=True)
    if new is None:
        return False
    if not new:
        console.write("Not changed.")
        return True
    again = await console.ask_in_chat(chat, "Repeat the new password: ", password=True)
    if again is None:
        return False
    if again != new:
        console.write("The new passwords differ; the password is not changed.")
        return True
    answer = await console.ask_in_chat(chat, "Sign out your other devices and sessions too? [Y/n] ")
    if answer is None:
        return False
    end_others = answer.strip().lower() not in ("n", "no")
    result = await client.change_password(old, new, end_other_sessions=end_others)
    if not end_others:
        console.write("Password changed. Your other sessions stay signed in.")
    elif result.sessions_ended == 0:
        console.write("Password changed. No other session was signed in.")
    else:
        n = result.sessions_ended
        console.write(f"Password changed; {n} other session{'s' * (n != 1)} signed out.")
    return True


async def delete_account(console: Console, client: ChatClient, chat: Chat) -> bool | None:
    """``/delete-account``: confirm with the username, then the password, then delete.
    True: deleted; False: not deleted (the chat goes on); None: the session ended under a
    prompt. A refusal (a wrong password) is raised as the server's ChatError."""
    name = clean(chat.username)
    answer = await console.ask_in_chat(
        chat, f"Delete the account {name} and its pending messages? Type {name} to confirm: "
    )
    if answer is None:
        return None
    if answer.strip() != chat.username:
        console.write("Not deleted.")
        return False
    password = await console.ask_in_chat(chat, "Your password: ", password=True)
    if password is None:
        return None
    if not password:
        console.write("Not deleted.")
        return False
    chat.leaving = True
    try:
        await client.delete_account(chat.username, password)
    except BaseException:
        chat.leaving = False
        raise
    console.write(f"The account {name} is deleted.")
    return True


__all__ = ["change_password", "delete_account"]
