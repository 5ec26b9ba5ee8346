"""chat.proto, the error table and the size limits agree with each other and with core."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import grpc
import pytest

from core import errors, limits
from core.session import Session
from core.types import CloseReason
from transports.grpc import _errors, _wire
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._sessions import new_token

PROTO = Path(_wire.__file__).with_name("chat.proto").read_text()
PROSE = " ".join(re.sub(r"^\s*//", "", line).strip() for line in PROTO.splitlines())


def test_every_limit_quoted_in_the_proto_is_core_limits_value() -> None:
    quoted = re.findall(r"core\.limits\.([A-Z_]+) = (\d+)", PROTO)
    assert len(quoted) >= 8
    for name, value in quoted:
        assert getattr(limits, name) == int(value), name


def test_the_proto_documents_the_wire_constants() -> None:
    assert f"MAX_MESSAGE_BYTES = {_wire.MAX_MESSAGE_BYTES}:" in PROSE
    assert f"MAX_REPLY_BYTES = {_wire.MAX_REPLY_BYTES}:" in PROSE
    assert f"PAGE_BUDGET_BYTES = {_wire.PAGE_BUDGET_BYTES} bytes" in PROSE
    assert f"{_wire.SESSION_KEY}: <token>" in PROSE
    assert f"{_wire.ERROR_KEY}: <ErrorReason name>" in PROSE
    assert f"for {_wire.IDLE_TIMEOUT / 60:.0f} minutes (idle expiry)" in PROSE


def test_error_reasons_in_the_proto_are_exactly_the_table() -> None:
    names = set(pb.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
    assert names == {reason.name for reason in _errors.REASONS}


def test_the_proto_states_each_reasons_status_code() -> None:
    for reason in _errors.REASONS:
        comment = re.search(
            rf"\n\s*// ([A-Z_]+): (?:[^\n]*\n\s*//)*[^\n]*\n\s*{reason.name} = ", PROTO
        )
        assert comment is not None, reason.name
        assert comment[1] == reason.code.name, reason.name


def _fake_status(reason: _errors.Reason, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        reason.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*reason.trailing_metadata),
        details,
    )


@pytest.mark.parametrize(
    "error_class",
    [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ChatError) and cls not in (errors.ChatError, errors.SessionClosed)
    ],
)
def test_each_domain_error_round_trips_through_a_status(error_class: type) -> None:
    exc = error_class("why it failed")
    reason = _errors.reason_for(exc, None)
    back = _errors.error_from(
        _fake_status(reason, str(exc)), _errors.reason_of(_fake_status(reason, str(exc)))
    )
    assert type(back) is error_class
    assert str(back) == "why it failed"


@pytest.mark.parametrize(
    "close_reason", [r for r in CloseReason if r is not CloseReason.LOGGED_OUT]
)
def test_an_ended_session_tells_the_client_why(close_reason: CloseReason) -> None:
    session = Session()
    session._end(close_reason)
    reason = _errors.reason_for(errors.SessionClosed("ended"), session)
    assert reason.ends is close_reason
    status = _fake_status(reason, "ended")
    assert _errors.reason_of(status) is reason
    assert isinstance(_errors.error_from(status, reason), errors.SessionClosed)


def test_an_unknown_token_reads_as_a_closed_session() -> None:
    reason = _errors.reason_for(errors.SessionClosed("unknown"), None)
    assert (reason.name, reason.code) == ("UNKNOWN_SESSION", grpc.StatusCode.UNAUTHENTICATED)


def test_statuses_without_our_metadata_fall_back_on_the_code() -> None:
    too_big = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata(), "too big"
    )
    assert isinstance(_errors.error_from(too_big, _errors.reason_of(too_big)), errors.LimitExceeded)
    gone = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone"
    )
    assert _errors.reason_of(gone) is None
    assert isinstance(_errors.error_from(gone, None), ConnectionError)
    late = grpc.aio.AioRpcError(
        grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(), "late"
    )
    assert isinstance(_errors.error_from(late, None), TimeoutError)


def test_the_message_size_limit_fits_the_largest_valid_request_with_headroom() -> None:
    names = [f"{i:0{limits.MAX_USERNAME_CHARS}d}" for i in range(limits.MAX_RECIPIENTS)]
    largest = pb.SendRequest(recipients=names, body="x" * limits.MAX_BODY_BYTES)
    assert largest.ByteSize() == _wire.LARGEST_REQUEST_BYTES
    just_over = pb.SendRequest(recipients=names, body="x" * (limits.MAX_BODY_BYTES + 1))
    assert just_over.ByteSize() < _wire.MAX_MESSAGE_BYTES  # reaches the core's clear error
    delivery = pb.Delivery(
        message_id=2**64 - 1,
        sent_at_ms=2**64 - 1,
        sender="x" * limits.MAX_USERNAME_CHARS,
        body="é" * (limits.MAX_BODY_BYTES // 2),
    )
    assert delivery.ByteSize() < _wire.MAX_MESSAGE_BYTES


def test_the_largest_push_fits_an_old_clients_receive_limit() -> None:
    """chat.proto: a pushed Delivery (a maximal body, from a 32-character sender, in a group
    of 257 with 256 other names of 32 characters) is never over MAX_MESSAGE_BYTES, the
    receive limit of clients built before history existed."""
    names = [f"{i:0{limits.MAX_USERNAME_CHARS}d}" for i in range(limits.MAX_RECIPIENTS)]
    delivery = pb.Delivery(
        message_id=2**63 - 1,
        sent_at_ms=2**64 - 1,
        sender=names[0],
        body="x" * limits.MAX_BODY_BYTES,
        participants=names,
        sender_deleted=True,
        conversation_id=2**63 - 1,
    )
    for push in (
        pb.SessionEvent(sent_copy=delivery),
        pb.ServerMessage(delivery=delivery),
        pb.ServerMessage(sent_copy=delivery),
    ):
        assert push.ByteSize() <= _wire.MAX_MESSAGE_BYTES, type(push).__name__
    # And a page of one such message, with every participant deleted, fits a reply.
    page = pb.ReadHistoryReply(
        conversation_id=2**63 - 1,
        participants=names,
        deleted_participants=names,
        messages=[delivery],
        more=True,
        read_up_to=2**63 - 1,
    )
    assert page.ByteSize() + _wire.PAGE_BUDGET_BYTES <= _wire.MAX_REPLY_BYTES


def test_tokens_are_128_random_bits_of_base64url() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", token)
