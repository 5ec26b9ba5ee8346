"""What the console prints (ui.console_format): pure, no terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.types import (
    AccountPage,
    Conversation,
    ConversationPage,
    Delivery,
    HistoryPage,
    LoginResult,
    MessagesDeleted,
    ReadMarker,
    SendResult,
    SentCopy,
)
from ui import timefmt
from ui.console_format import (
    clean,
    format_accounts,
    format_clock,
    format_conversation,
    format_conversations,
    format_delivery,
    format_history,
    format_login,
    format_notice,
    format_prompt,
    format_send_result,
    format_session_end,
)

BERLIN_SUMMER = timezone(timedelta(hours=2))


def ms(*args: int, tz: timezone = UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


def test_clock_is_local_time_with_its_date_in_the_format_the_web_ui_shows() -> None:
    sent = ms(2024, 6, 1, 10, 3, 22)  # 12:03 in UTC+2
    assert format_clock(sent, tz=BERLIN_SUMMER) == "2024-06-01 12:03"
    assert format_clock(sent, tz=BERLIN_SUMMER) == timefmt.stamp(sent, BERLIN_SUMMER)
    # 23:30 UTC is already the next day in UTC+2.
    assert format_clock(ms(2024, 6, 1, 23, 30), tz=BERLIN_SUMMER) == "2024-06-02 01:30"


def test_day_labels_of_the_shared_time_format() -> None:
    now = ms(2024, 6, 3, 9)
    assert timefmt.day_label(ms(2024, 6, 3, 1), now_ms=now, tz=UTC) == "Today"
    assert timefmt.day_label(ms(2024, 6, 2, 23), now_ms=now, tz=UTC) == "Yesterday"
    assert timefmt.day_label(ms(2024, 6, 1, 12), now_ms=now, tz=UTC) == "Sat 2024-06-01"
    assert timefmt.clock(ms(2024, 6, 1, 10, 3, 22), BERLIN_SUMMER) == "12:03"
    assert timefmt.zone("Europe/Berlin").utcoffset(datetime(2024, 6, 1)) == timedelta(hours=2)
    assert timefmt.zone("../../etc/passwd") is UTC
    assert timefmt.zone("Not/AZone") is UTC


def test_delivery_shows_time_id_sender_and_body() -> None:
    sent = ms(2024, 6, 1, 10, 3, 22)
    delivery = Delivery(7, "alice", "hello bob", sent, ("alice",))
    text = format_delivery(delivery, me="bob", tz=BERLIN_SUMMER)
    assert text == "[2024-06-01 12:03] #7 alice: hello bob"


def test_a_group_message_names_everyone_and_a_deleted_sender_is_marked() -> None:
    group = Delivery(8, "alice", "lunch?", 0, ("alice", "carol"))
    assert format_delivery(group, me="bob", tz=UTC).endswith("#8 alice → you, carol: lunch?")
    mine = Delivery(9, "bob", "yes", 0, ("alice", "carol"))
    assert format_delivery(mine, me="bob", tz=UTC).endswith("#9 you → alice, carol: yes")
    gone = Delivery(10, "dave", "bye", 0, ("dave",), sender_deleted=True)
    assert format_delivery(gone, me="dave", tz=UTC).endswith("#10 dave (deleted account): bye")


def test_notices_from_other_devices_and_deletions() -> None:
    copy = SentCopy(Delivery(11, "bob", "sent elsewhere", 0, ("alice",)))
    assert format_notice(copy, me="bob", tz=UTC).endswith(
        "#11 you → alice: sent elsewhere  (another device)"
    )
    assert format_notice(ReadMarker(4, 11, 0), me="bob") == (
        "(conversation #4 was read on another device: nothing unread)"
    )
    assert format_notice(MessagesDeleted((3, 5)), me="bob") == "(Messages #3, #5 deleted.)"


def test_history_pages_and_conversation_lists() -> None:
    a = Delivery(1, "alice", "one", 0, ("alice",), conversation_id=4)
    b = Delivery(2, "bob", "two", 0, ("alice",), conversation_id=4)
    text = format_history(HistoryPage(4, ("alice",), (b, a), True), me="bob", older=False, tz=UTC)
    assert text.split("\n") == [
        "The 2 last messages with alice (#4):",
        "[1970-01-01 00:00] #1 alice: one",
        "[1970-01-01 00:00] #2 you → alice: two",
        "  ... older messages: /more",
    ]
    assert format_history(HistoryPage(0, ("zed",), (), False), me="bob", older=False) == (
        "No messages with zed yet."
    )
    gone = format_history(
        HistoryPage(4, ("alice",), (a,), False, ("alice",)), me="bob", older=False, tz=UTC
    )
    assert "alice (deleted account) (#4)" in gone
    assert "replies here do not go to it" in gone
    page = ConversationPage((Conversation(4, ("alice",), b, 2, 0),), more=False)
    listing = format_conversations(page, me="bob", first=True, tz=UTC).split("\n")
    assert listing[0].startswith("Conversations")
    assert listing[1].split() == [
        "#4",
        "alice",
        "2",
        "unread",
        "[1970-01-01",
        "00:00]",
        "you:",
        "two",
    ]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain ünïcode ✓ 日本", "plain ünïcode ✓ 日本"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07"),
        ("bell\x07 del\x7f csi\x9b", "bell\\x07 del\\x7f csi\\x9b"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
        ("back\rspace", "back\nspace"),
    ],
)
def test_clean_neutralises_terminal_controls(raw: str, shown: str) -> None:
    assert clean(raw) == shown


def test_a_sender_cannot_inject_escapes_through_a_message() -> None:
    text = format_delivery(Delivery(1, "mallory", "\x1b[1A\x1b[2Kfake", 0), tz=UTC)
    assert "\x1b" not in text
    assert text.endswith("mallory: \\x1b[1A\\x1b[2Kfake")


def test_login_greeting_counts_pending_messages() -> None:
    assert format_login(LoginResult("bob", 0), signed_up=False) == (
        "Logged in as bob (/help lists the commands). No messages were waiting for you."
    )
    assert "1 message was waiting for you:" in format_login(LoginResult("bob", 1), signed_up=False)
    assert "3 messages were waiting for you:" in format_login(LoginResult("b", 3), signed_up=False)
    assert format_login(LoginResult("bob", 0), signed_up=True).startswith("Welcome, bob!")


def test_send_result_is_silent_unless_someone_is_unknown() -> None:
    assert format_send_result(("bob",), SendResult(5, 0)) is None
    partly = format_send_result(("bob", "zed"), SendResult(5, 0, ("zed",)))
    assert partly == "Not delivered to zed: no such account; the others got it."
    nobody = format_send_result(("zed", "zoe"), SendResult(0, 0, ("zed", "zoe")))
    assert nobody == "Not sent: no accounts named zed, zoe."


def test_account_pages() -> None:
    page = AccountPage(("alice", "albert"), more=True)
    assert format_accounts("al*", page, 1) == (
        "Accounts matching 'al*' (1-2):\n  alice  albert\n  ... more follow: /more"
    )
    last = AccountPage(("alvin",), more=False)
    assert format_accounts("al*", last, 3) == "Accounts matching 'al*' (3-3):\n  alvin"
    assert format_accounts("zz*", AccountPage((), False), 1) == "No account matches 'zz*'."


def test_long_listings_wrap_between_names_only() -> None:
    names = tuple(f"user-{i:02d}-{'x' * 20}" for i in range(10))
    text = format_accounts("*", AccountPage(names, more=False), 1)
    body = text.split("\n")[1:]
    assert len(body) > 1
    assert all(len(line) <= 78 for line in body)
    assert " ".join(body).split() == list(names)


def test_prompt_and_conversation() -> None:
    assert format_prompt("alice", ()) == "alice> "
    assert format_prompt("alice", ("bob", "carol")) == "alice → bob,carol> "
    assert format_conversation(("bob",)) == "Talking to bob: plain lines go to them."
    assert "/to NAMES" in format_conversation(())


def test_session_end_says_why() -> None:
    assert format_session_end("the account was deleted") == (
        "The server ended your session: the account was deleted."
    )
    assert format_session_end(None) == "The server ended your session: the connection was lost."
