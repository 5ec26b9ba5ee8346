"""What the console prints (ui.console_format): pure, no terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.types import AccountPage, Delivery, LoginResult, SendResult
from ui.console_format import (
    clean,
    format_accounts,
    format_clock,
    format_conversation,
    format_delivery,
    format_login,
    format_prompt,
    format_send_result,
    format_session_end,
)

BERLIN_SUMMER = timezone(timedelta(hours=2))


def ms(*args: int, tz: timezone = UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


def test_clock_is_local_time_and_shows_the_date_only_for_other_days() -> None:
    sent = ms(2024, 6, 1, 10, 3, 22)  # 12:03:22 in UTC+2
    assert format_clock(sent, now_ms=ms(2024, 6, 1, 20), tz=BERLIN_SUMMER) == "12:03:22"
    assert format_clock(sent, now_ms=ms(2024, 6, 2, 9), tz=BERLIN_SUMMER) == "2024-06-01 12:03:22"
    # 23:30 UTC is already the next day in UTC+2.
    late = ms(2024, 6, 1, 23, 30)
    assert format_clock(late, now_ms=ms(2024, 6, 2, 8), tz=BERLIN_SUMMER) == "01:30:00"


def test_delivery_shows_time_sender_and_body() -> None:
    sent = ms(2024, 6, 1, 10, 3, 22)
    delivery = Delivery(7, "alice", "hello bob", sent)
    text = format_delivery(delivery, now_ms=sent, tz=BERLIN_SUMMER)
    assert text == "[12:03:22] alice: hello bob"


def test_multi_line_bodies_align_under_the_first_line() -> None:
    sent = ms(2024, 6, 1, 10, 3, 22)
    text = format_delivery(Delivery(7, "al", "one\r\ntwo\nthree", sent), now_ms=sent, tz=UTC)
    assert text.split("\n") == ["[10:03:22] al: one", "               two", "               three"]


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
    text = format_delivery(Delivery(1, "mallory", "\x1b[1A\x1b[2Kfake", 0), now_ms=0, tz=UTC)
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
