"""Issue 13 in the core: the password policy, resume tokens kept only as hashes, expiry, and
the custom protocol's error codes per version. (The behaviour on every transport is in
tests/conformance/test_account_security.py.)"""

from __future__ import annotations

import hashlib

import pytest

from core import limits
from core import service as service_module
from core.errors import (
    AuthFailed,
    InvalidArgument,
    LimitExceeded,
    ResumeRefused,
    SessionClosed,
    WeakPassword,
)
from core.memory_store import MemoryStore
from core.password_policy import TOO_COMMON, TOO_SHORT, check_new_password, common_passwords
from core.passwords import HashCost, make_hasher
from core.service import ChatService
from core.sqlite_store import SqliteStore
from transports.custom._errors import code_for_error
from transports.custom._wire import ErrorCode

GOOD = "pw-secret-1"


# -- the policy ---------------------------------------------------------------------------------
def test_the_bundled_list_is_loaded_lower_case_and_long_enough_to_matter() -> None:
    listed = common_passwords()
    assert len(listed) > 3000
    assert {"password", "12345678", "iloveyou", "trustno1"} <= listed
    assert all(p == p.lower() and len(p) >= limits.MIN_PASSWORD_CHARS for p in listed)


@pytest.mark.parametrize(
    ("password", "error", "sentence"),
    [
        ("", WeakPassword, TOO_SHORT),
        ("seven77", WeakPassword, TOO_SHORT),
        ("é" * 7, WeakPassword, TOO_SHORT),  # 14 bytes, but 7 characters
        ("PASSWORD", WeakPassword, TOO_COMMON),  # the list is compared ignoring case
        ("Trustno1", WeakPassword, TOO_COMMON),
        ("x" * (limits.MAX_PASSWORD_BYTES + 1), LimitExceeded, "at most 256 bytes"),
    ],
)
def test_weak_and_oversized_passwords_are_refused_in_words(password, error, sentence) -> None:
    with pytest.raises(error) as refused:
        check_new_password(password)
    assert sentence in str(refused.value)
    assert issubclass(error, InvalidArgument)


@pytest.mark.parametrize("password", ["é" * 8, "pw-secret-1", "correct horse battery staple"])
def test_long_enough_uncommon_passwords_pass(password) -> None:
    check_new_password(password)


async def test_an_account_made_before_the_policy_still_logs_in_with_its_short_password() -> None:
    store = MemoryStore()
    await store.create_account("old", make_hasher(HashCost.LOW).hash("pw"), 0)
    service = ChatService(store, hash_cost=HashCost.LOW)
    result = await service.login(service.open_session(), "old", "pw")
    assert result.username == "old" and result.resume_token


# -- tokens are stored hashed -------------------------------------------------------------------
async def test_a_memory_store_holds_the_tokens_sha256_never_the_token() -> None:
    store = MemoryStore()
    service = ChatService(store, hash_cost=HashCost.LOW)
    token = (await service.signup(service.open_session(), "alice", GOOD)).resume_token
    assert len(token) == 43
    assert token.encode() not in store._tokens
    assert hashlib.sha256(token.encode()).digest() in store._tokens


async def test_a_database_file_holds_no_token(tmp_path) -> None:
    path = tmp_path / "tokens.db"
    store = SqliteStore(path)
    service = ChatService(store, hash_cost=HashCost.LOW)
    token = (await service.signup(service.open_session(), "alice", GOOD)).resume_token
    await store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("tokens.db*"))  # (and -wal, if left)
    assert token.encode() not in raw
    reopened = SqliteStore(path)
    try:
        digest = hashlib.sha256(token.encode()).digest()
        assert await reopened.resume_account(digest, 0) == (1, "alice")
    finally:
        await reopened.close()


async def test_an_expired_token_is_refused_and_ends_the_session(monkeypatch) -> None:
    service = ChatService(MemoryStore(), hash_cost=HashCost.LOW)
    token = (await service.signup(service.open_session(), "alice", GOOD)).resume_token
    now = service_module.now_ms()
    lifetime_ms = limits.RESUME_TOKEN_LIFETIME_S * 1000
    monkeypatch.setattr(service_module, "now_ms", lambda: now + lifetime_ms - 60_000)
    assert (await service.resume(service.open_session(), token)).username == "alice"
    monkeypatch.setattr(service_module, "now_ms", lambda: now + lifetime_ms + 60_000)
    late = service.open_session()
    with pytest.raises(ResumeRefused):
        await service.resume(late, token)
    assert late.closed
    with pytest.raises(SessionClosed):
        await service.login(late, "alice", GOOD)


async def test_resume_refused_is_an_auth_failure_for_code_that_knows_only_that() -> None:
    assert issubclass(ResumeRefused, AuthFailed)
    assert "log in with your password" in str(ResumeRefused())


# -- the custom protocol's codes per version ------------------------------------------------
@pytest.mark.parametrize(
    ("error", "old", "new"),
    [
        (WeakPassword(TOO_SHORT), ErrorCode.INVALID_ARGUMENT, ErrorCode.WEAK_PASSWORD),
        (ResumeRefused(), ErrorCode.AUTH_FAILED, ErrorCode.RESUME_REFUSED),
        (LimitExceeded("x"), ErrorCode.LIMIT_EXCEEDED, ErrorCode.LIMIT_EXCEEDED),
    ],
)
def test_an_older_connection_gets_the_code_its_version_knows(error, old, new) -> None:
    assert code_for_error(error, 1) is old
    assert code_for_error(error, 2) is old
    assert code_for_error(error, 3) is new
    assert code_for_error(error) is new
