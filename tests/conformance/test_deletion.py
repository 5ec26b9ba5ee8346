"""Rules 14-15: deleting an account, on every transport."""

from __future__ import annotations

import pytest

from core import AuthFailed, DeletedSenderPolicy, Forbidden, NotLoggedIn, SessionClosed
from tests.conformance.conftest import Chat, make_loopback_service
from tests.conformance.helpers import closed_within, receive_bodies
from wirechat.launch import ServerProcess

ENDED = (ConnectionError, SessionClosed)


async def test_rule14_delete_needs_a_session_and_only_deletes_yourself(chat, names):
    anonymous = await chat.client()
    with pytest.raises(NotLoggedIn):
        await anonymous.delete_account(names("bob"), "pw-secret-123")
    await chat.user(names("bob"))
    alice = await chat.user(names("alice"))
    with pytest.raises(Forbidden):
        await alice.delete_account(names("bob"), "pw-secret-123")
    viewer = await chat.user(names("viewer"))
    page = await viewer.list_accounts(f"*_{names.tag}")
    assert names("bob") in page.usernames and names("alice") in page.usernames


async def test_rule14_delete_ends_every_session_of_the_user(chat, names):
    await chat.user(names("bob"))
    laptop, phone = await chat.login(names("bob")), await chat.login(names("bob"))
    await laptop.delete_account(names("bob"), "pw-secret-123")
    assert await closed_within(phone)
    assert await closed_within(laptop)
    with pytest.raises(ENDED):
        await phone.send([names("bob")], "am I still here?")
    with pytest.raises(AuthFailed):
        await (await chat.client()).login(names("bob"), "pw-secret-123")


async def test_rule15_a_deleted_senders_undelivered_messages_are_purged(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    await alice.send([names("bob")], "you will never see this")
    await alice.delete_account(names("alice"), "pw-secret-123")
    bob = await chat.client()
    assert (await bob.login(names("bob"), "pw-secret-123")).pending == 0
    carol = await chat.user(names("carol"))
    await carol.send([names("bob")], "marker")
    assert await receive_bodies(bob) == ["marker"]


async def test_rule15_the_name_is_free_again_and_the_new_account_gets_nothing_old(chat, names):
    alice = await chat.user(names("alice"))
    await chat.user(names("bob"))
    await alice.send([names("bob")], "to the old bob")
    old_bob = await chat.login(names("bob"), auto_ack=False)
    assert await receive_bodies(old_bob) == ["to the old bob"]  # pushed, never acked
    await old_bob.delete_account(names("bob"), "pw-secret-123")
    new_bob = await chat.client()
    assert (await new_bob.signup(names("bob"), "new-password")).pending == 0
    await alice.send([names("bob")], "welcome, new bob")
    assert await receive_bodies(new_bob) == ["welcome, new bob"]


@pytest.fixture
async def keep_chat(transport, tmp_path, test_tls):
    """A server started with --deleted-sender keep (in-process for loopback)."""
    server = None
    if transport == "loopback":
        address = make_loopback_service(deleted_sender=DeletedSenderPolicy.KEEP)
    else:
        server = ServerProcess(
            [transport],
            tmp_path / "keep.db",
            extra_args=["--deleted-sender", "keep"],
            tls=test_tls.server if test_tls else None,
        ).start()
        address = server.addresses[transport]
    chats = Chat(transport, address, test_tls)
    try:
        yield chats
    finally:
        await chats.aclose()
        if server is not None:
            server.stop()


async def test_rule15_keep_policy_delivers_a_deleted_senders_messages(keep_chat, names):
    alice = await keep_chat.user(names("alice"))
    await keep_chat.user(names("bob"))
    await alice.send([names("bob")], "sent before I left")
    await alice.delete_account(names("alice"), "pw-secret-123")
    bob = await keep_chat.client()
    assert (await bob.login(names("bob"), "pw-secret-123")).pending == 1
    assert await receive_bodies(bob) == ["sent before I left"]
