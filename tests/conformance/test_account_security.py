"""Issue 13, account security, on every transport: resume tokens, change password, the password
again to delete the account, and the policy for new passwords."""

from __future__ import annotations

import os
from typing import Any

import pytest

from core import (
    AuthFailed,
    CloseReason,
    ResumeRefused,
    SessionClosed,
    WeakPassword,
    limits,
)
from tests.conformance.conftest import Chat
from tests.conformance.helpers import closed_within, receive_bodies
from tests.conformance.test_cross_transport import PAIRS
from transports import registry
from wirechat.launch import ServerProcess

ENDED = (ConnectionError, SessionClosed)
PASSWORD = "pw-secret-123"  # (the suite's default, Chat.user)
NEW_PASSWORD = "a-new-secret-456"


async def still_logged_in(client, me: str) -> bool:
    """The session answers a request that needs a login (a note to self)."""
    return (await client.send([me], "still here")).message_id > 0


# -- resume tokens ------------------------------------------------------------------------------
async def test_signup_and_login_give_a_resume_token_that_brings_pending_messages(chat, names):
    alice = await chat.user(names("alice"))
    token = alice.resume_token
    assert len(token) == 43  # 32 random bytes in base64url
    laptop = await chat.login(names("alice"))
    assert laptop.resume_token not in ("", token)  # each login has its own
    bob = await chat.user(names("bob"))
    await alice.close()  # the connection drops
    await laptop.close()
    await bob.send([names("alice")], "one")
    await bob.send([names("alice")], "two")
    again = await chat.client()
    result = await again.resume(token)
    assert (result.username, result.pending, result.resume_token) == (names("alice"), 2, token)
    assert again.logged_in and again.resume_token == token
    assert await receive_bodies(again, 2) == ["one", "two"]
    assert await still_logged_in(again, names("alice"))


async def test_a_token_resumes_on_several_connections_until_logout_revokes_it(chat, names):
    alice = await chat.user(names("alice"))
    token = alice.resume_token
    first, second = await chat.client(), await chat.client()
    assert (await first.resume(token)).username == names("alice")
    assert (await second.resume(token)).username == names("alice")
    await first.logout()  # revokes the token of its session: this one
    refused = await chat.client()
    with pytest.raises(ResumeRefused):
        await refused.resume(token)
    with pytest.raises(ENDED):  # like a failed login, a refused resume ends the session
        await refused.login(names("alice"), PASSWORD)
    assert await still_logged_in(second, names("alice"))  # a live session is not ended
    assert await still_logged_in(alice, names("alice"))


@pytest.mark.parametrize(
    "token", ["", "not-a-token", "x" * 43, "é" * 43, "y" * (limits.MAX_RESUME_TOKEN_CHARS + 1)]
)
async def test_a_token_that_was_never_issued_is_refused(chat, token):
    client = await chat.client()
    with pytest.raises(ResumeRefused) as refused:
        await client.resume(token)
    assert "log in with your password" in str(refused.value)
    assert not client.logged_in


async def test_deleting_the_account_revokes_its_tokens(chat, names):
    alice = await chat.user(names("alice"))
    token = alice.resume_token
    await alice.delete_account(names("alice"), PASSWORD)
    with pytest.raises(ResumeRefused):
        await (await chat.client()).resume(token)
    await chat.user(names("alice"))  # the name's next owner is another account
    with pytest.raises(ResumeRefused):
        await (await chat.client()).resume(token)


@pytest.mark.parametrize("transport", registry.WIRE_TRANSPORTS)
async def test_a_resume_token_survives_a_server_restart(
    transport, tmp_path, test_tls, names, request
):
    tls = test_tls.server if test_tls else None
    db: Any = tmp_path / "tokens.db"
    if os.environ.get("WIRECHAT_TEST_STORE") == "postgres":  # (make test-postgres)
        db = request.getfixturevalue("postgres").url
    server = ServerProcess([transport], db, tls=tls).start()
    try:
        chat = Chat(transport, server.addresses[transport], test_tls)
        alice = await chat.user(names("alice"))
        token = alice.resume_token
        bob = await chat.user(names("bob"))
        await bob.send([names("alice")], "sent before the restart")
        await chat.aclose()

        server.kill9()
        server.start()  # same database, fresh ports

        chat = Chat(transport, server.addresses[transport], test_tls)
        again = await chat.client()
        result = await again.resume(token)
        assert (result.username, result.pending) == (names("alice"), 1)
        assert await receive_bodies(again, 1) == ["sent before the restart"]
        await chat.aclose()
    finally:
        server.stop()


# -- change password ----------------------------------------------------------------------------
async def test_a_wrong_or_weak_password_change_changes_nothing(chat, names):
    alice = await chat.user(names("alice"))
    phone = await chat.login(names("alice"))
    token = alice.resume_token
    with pytest.raises(AuthFailed):
        await alice.change_password("not-my-password", NEW_PASSWORD)
    with pytest.raises(WeakPassword) as weak:
        await alice.change_password(PASSWORD, "short")
    assert "at least 8 characters" in str(weak.value)
    for client in (alice, phone):  # both sessions stay
        assert await still_logged_in(client, names("alice"))
    assert alice.resume_token == token
    assert (await (await chat.client()).resume(token)).username == names("alice")
    await chat.login(names("alice"), PASSWORD)  # the old password still works


async def test_changing_the_password_ends_the_other_sessions_and_revokes_every_token(chat, names):
    laptop = await chat.user(names("alice"))
    phone, tablet = await chat.login(names("alice")), await chat.login(names("alice"))
    old_tokens = [laptop.resume_token, phone.resume_token, tablet.resume_token]
    changed = await laptop.change_password(PASSWORD, NEW_PASSWORD)
    assert changed.sessions_ended == 2
    assert laptop.resume_token == changed.resume_token and changed.resume_token not in old_tokens
    for other in (phone, tablet):
        assert await closed_within(other)
        assert other.closed_reason == CloseReason.PASSWORD_CHANGED.value
        with pytest.raises(ENDED):
            await other.send([names("alice")], "am I still here?")
    assert await still_logged_in(laptop, names("alice"))
    for token in old_tokens:
        with pytest.raises(ResumeRefused):
            await (await chat.client()).resume(token)
    with pytest.raises(AuthFailed):
        await (await chat.client()).login(names("alice"), PASSWORD)
    await chat.login(names("alice"), NEW_PASSWORD)
    assert (await (await chat.client()).resume(changed.resume_token)).pending >= 0


async def test_changing_the_password_may_keep_the_other_sessions(chat, names):
    laptop = await chat.user(names("alice"))
    phone = await chat.login(names("alice"))
    laptop_token, phone_token = laptop.resume_token, phone.resume_token
    changed = await laptop.change_password(PASSWORD, NEW_PASSWORD, end_other_sessions=False)
    assert changed.sessions_ended == 0
    assert await still_logged_in(phone, names("alice"))
    assert (await (await chat.client()).resume(phone_token)).username == names("alice")
    with pytest.raises(ResumeRefused):  # this session's own old token was replaced
        await (await chat.client()).resume(laptop_token)
    await chat.login(names("alice"), NEW_PASSWORD)


# -- deletion asks for the password --------------------------------------------------------------
@pytest.mark.parametrize("password", ["", "not-my-password"])
async def test_deleting_without_the_right_password_is_refused_and_deletes_nothing(
    chat, names, password
):
    alice = await chat.user(names("alice"))
    bob = await chat.user(names("bob"))
    await bob.send([names("alice")], "waiting for you")
    with pytest.raises(AuthFailed):
        await alice.delete_account(names("alice"), password)
    assert await still_logged_in(alice, names("alice"))
    again = await chat.login(names("alice"))  # the account and its messages are all there
    assert await receive_bodies(again, 1) == ["waiting for you"]


# -- the password policy -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("password", "sentence"),
    [
        ("short", "a password needs at least 8 characters"),
        ("", "a password needs at least 8 characters"),
        ("Password123", "that password is on the list of the most common passwords"),
        ("qwertyuiop", "that password is on the list of the most common passwords"),
    ],
)
async def test_a_weak_password_is_refused_at_signup_with_a_sentence(
    chat, names, password, sentence
):
    client = await chat.client()
    with pytest.raises(WeakPassword) as weak:
        await client.signup(names("weak"), password)
    assert sentence in str(weak.value)
    with pytest.raises(AuthFailed):  # no account was made
        await (await chat.client()).login(names("weak"), password or "x")


# -- across transports: tokens and password changes are the account's, not a transport's -------
@pytest.fixture
async def two_transports(request, wire_server, test_tls):
    chats = [Chat(name, wire_server.addresses[name], test_tls) for name in request.param]
    try:
        yield chats
    finally:
        for chat in chats:
            await chat.aclose()


@pytest.mark.parametrize("two_transports", PAIRS, indirect=True, ids=lambda p: f"{p[0]}-to-{p[1]}")
async def test_a_token_from_one_transport_resumes_on_another_and_a_change_reaches_it(
    two_transports, names
):
    here, there = two_transports
    alice = await here.user(names("alice"))
    elsewhere = await there.client()
    assert (await elsewhere.resume(alice.resume_token)).username == names("alice")
    changed = await alice.change_password(PASSWORD, NEW_PASSWORD)
    assert changed.sessions_ended == 1
    assert await closed_within(elsewhere)
    assert elsewhere.closed_reason == CloseReason.PASSWORD_CHANGED.value
