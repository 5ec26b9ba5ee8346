"""Rules 1-7: accounts and sessions, on every transport."""

from __future__ import annotations

import time

import pytest

from core import (
    AlreadyLoggedIn,
    AuthFailed,
    InvalidArgument,
    LimitExceeded,
    NotLoggedIn,
    SessionClosed,
    UsernameTaken,
    limits,
)
from tests.conformance.helpers import receive_bodies

ENDED = (ConnectionError, SessionClosed)


async def test_rule01_usernames_are_checked_and_case_sensitive(chat, names):
    lower, upper = names("casey"), names("Casey")
    a = await chat.user(lower)
    b = await chat.user(upper)  # a different account: names compare exactly
    await a.send([upper], "hi Casey")
    assert await receive_bodies(b) == ["hi Casey"]
    for bad in ["", "has space", "x" * 33, "semi;colon", "émile"]:
        client = await chat.client()
        with pytest.raises(InvalidArgument):
            await client.signup(bad, "pw-secret-1")


async def test_rule01_password_length_limits(chat, names):
    client = await chat.client()
    with pytest.raises(LimitExceeded):
        await client.signup(names("pwlong"), "p" * (limits.MAX_PASSWORD_BYTES + 1))
    client = await chat.client()
    with pytest.raises(InvalidArgument):  # WeakPassword where the wire names it (issue 13)
        await client.signup(names("pwempty"), "")
    # 256 bytes of UTF-8 (128 two-byte characters) is the longest allowed, and works for login
    longest = "é" * (limits.MAX_PASSWORD_BYTES // 2)
    await chat.user(names("pwmax"), longest)
    await chat.login(names("pwmax"), longest)


async def test_rule02_signup_logs_in_and_a_taken_name_is_an_error(chat, names):
    alice = await chat.client()
    result = await alice.signup(names("alice"), "pw-secret-1")
    assert result.username == names("alice") and result.pending == 0
    page = await alice.list_accounts(names("alice"))  # allowed: signup logged the session in
    assert page.usernames == (names("alice"),)
    again = await chat.client()
    with pytest.raises(UsernameTaken):
        await again.signup(names("alice"), "other-secret-1")


async def test_rule03_wrong_password_and_unknown_user_give_the_same_error(chat, names):
    await chat.user(names("dora"), "right-secret")
    wrong_password, unknown_user = await chat.client(), await chat.client()
    with pytest.raises(AuthFailed) as wrong:
        await wrong_password.login(names("dora"), "wrong")
    with pytest.raises(AuthFailed) as unknown:
        await unknown_user.login(names("nobody"), "whatever")
    assert str(wrong.value) == str(unknown.value)


async def test_rule03_repeated_failures_slow_down_then_the_right_password_works(chat, names):
    await chat.user(names("eve"), "right-secret")
    durations = []
    for _ in range(5):
        client = await chat.client()
        started = time.monotonic()
        with pytest.raises(AuthFailed):
            await client.login(names("eve"), "wrong")
        durations.append(time.monotonic() - started)
    # the first failures are not delayed; after them every attempt waits (a lower bound only)
    assert durations[4] >= 0.04
    client = await chat.client()
    assert (await client.login(names("eve"), "right-secret")).username == names("eve")


async def test_rule04_a_failed_login_ends_the_session_and_a_fresh_one_works(chat, names):
    await chat.user(names("fay"), "right-secret")
    client = await chat.client()
    with pytest.raises(AuthFailed):
        await client.login(names("fay"), "wrong")
    with pytest.raises(ENDED):
        await client.login(names("fay"), "right-secret")
    fresh = await chat.client()
    assert (await fresh.login(names("fay"), "right-secret")).username == names("fay")


async def test_rule04_a_failed_signup_ends_the_session(chat, names):
    await chat.user(names("gus"))
    client = await chat.client()
    with pytest.raises(UsernameTaken):
        await client.signup(names("gus"), "pw-secret-1")
    with pytest.raises(ENDED):
        await client.signup(names("gus2"), "pw-secret-1")


async def test_rule05_one_user_may_be_logged_in_from_many_clients(chat, names):
    await chat.user(names("hal"))
    devices = [await chat.login(names("hal")) for _ in range(3)]
    sender = await chat.user(names("ivy"))
    await sender.send([names("hal")], "to all devices")
    for device in devices:
        assert await receive_bodies(device) == ["to all devices"]
    with pytest.raises(AlreadyLoggedIn):
        await devices[0].login(names("hal"), "pw-secret-123")


async def test_rule06_logout_ends_the_calling_session_only(chat, names):
    await chat.user(names("jan"))
    laptop, phone = await chat.login(names("jan")), await chat.login(names("jan"))
    await laptop.logout()
    with pytest.raises(NotLoggedIn):
        await laptop.send([names("jan")], "after logout")
    kim = await chat.user(names("kim"))
    await kim.send([names("jan")], "still here?")
    assert await receive_bodies(phone) == ["still here?"]
    await phone.send([names("kim")], "yes")
    assert await receive_bodies(kim) == ["yes"]


async def test_rule07_list_accounts_needs_a_session(chat):
    client = await chat.client()
    with pytest.raises(NotLoggedIn):
        await client.list_accounts("*")


async def test_rule07_glob_wildcards_sorting_and_paging(chat, names):
    tag = names.tag
    members = [f"m{i}_{tag}" for i in (3, 1, 4, 5, 2)]
    for name in members:
        await chat.user(name)
    dotted, lookalike = f"a.b_{tag}", f"axb_{tag}"
    await chat.user(dotted)
    await chat.user(lookalike)
    viewer = await chat.user(f"viewer_{tag}")

    pages, after = [], ""
    for _ in range(5):  # bounded: 5 members in pages of 2 need 3 requests
        page = await viewer.list_accounts(f"m*_{tag}", after=after, limit=2)
        pages.append(page)
        if not page.more:
            break
        after = page.usernames[-1]
    assert [p.usernames for p in pages] == [
        (f"m1_{tag}", f"m2_{tag}"),
        (f"m3_{tag}", f"m4_{tag}"),
        (f"m5_{tag}",),
    ]
    assert [p.more for p in pages] == [True, True, False]
    single = await viewer.list_accounts(f"m?_{tag}")
    assert single.usernames == tuple(sorted(members))
    literal = await viewer.list_accounts(f"a.b_{tag}")  # '.' is literal, not "any character"
    assert literal.usernames == (dotted,)
    assert (await viewer.list_accounts(f"[ax]*_{tag}")).usernames == ()  # '[' is literal too
    with pytest.raises(LimitExceeded):
        await viewer.list_accounts("*" * (limits.MAX_PATTERN_CHARS + 1))
