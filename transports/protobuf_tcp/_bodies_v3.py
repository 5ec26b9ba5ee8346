"""Version 3 frame bodies of protobuf-tcp: account security (resume tokens, change password,
the password again to delete the account).

Custom protocol version 3's opcodes (custom PROTOCOL.md sections 6.8, 6.14-6.15, 7.2-7.3,
7.18), each carrying the chat.proto message the gRPC transports use for the same thing: RESUME
a ``ResumeRequest`` (answered by LOGGED_IN), CHANGE_PASSWORD a ``ChangePasswordRequest``,
PASSWORD_CHANGED a ``ChangePasswordReply``. SIGNED_UP and LOGGED_IN keep their ``LoginReply``
with ``resume_token`` set (and LOGGED_IN ``username``: a RESUME names no account), and
DELETE_ACCOUNT its ``DeleteAccountRequest`` with ``password`` set. Only a version 3 connection
sets those fields, so versions 1 and 2 stay byte for byte what they were.
"""

from __future__ import annotations

from transports.custom._events import DeleteAccount, LoggedIn, SignedUp
from transports.custom._messages import Kind
from transports.custom._security import ChangePassword, PasswordChanged, Resume
from transports.custom._wire import Opcode
from transports.grpc import _convert as convert
from transports.grpc._generated import chat_pb2 as chat
from transports.protobuf_tcp._bodies import Spec, _decoder, _encoder, _request_id, _rid
from transports.protobuf_tcp._bodies_v2 import CLIENT_MESSAGES_V2, SERVER_MESSAGES_V2
from transports.protobuf_tcp._bodies_v2 import MESSAGES as MESSAGES_V2

#: The protobuf message of each opcode version 3 adds.
MESSAGE_OF_V3: dict[Opcode, type] = {
    Opcode.RESUME: chat.ResumeRequest,
    Opcode.CHANGE_PASSWORD: chat.ChangePasswordRequest,
    Opcode.PASSWORD_CHANGED: chat.ChangePasswordReply,
}
_REQUEST = _request_id

_V3_NEW: tuple[tuple[Spec, ...], tuple[Spec, ...]] = (
    (
        (
            Opcode.RESUME,
            Resume,
            Kind.REQUEST,
            _decoder(chat.ResumeRequest, _REQUEST, lambda m, i: Resume(i, m.resume_token)),
            _encoder(_rid, 1, lambda e: chat.ResumeRequest(resume_token=e.token)),
        ),
        (
            Opcode.CHANGE_PASSWORD,
            ChangePassword,
            Kind.REQUEST,
            _decoder(
                chat.ChangePasswordRequest,
                _REQUEST,
                lambda m, i: ChangePassword(
                    i, m.old_password, m.new_password, m.end_other_sessions
                ),
            ),
            _encoder(
                _rid,
                1,
                lambda e: chat.ChangePasswordRequest(
                    old_password=e.old_password,
                    new_password=e.new_password,
                    end_other_sessions=e.end_other_sessions,
                ),
            ),
        ),
    ),
    (
        (
            Opcode.PASSWORD_CHANGED,
            PasswordChanged,
            Kind.RESPONSE,
            _decoder(
                chat.ChangePasswordReply,
                _REQUEST,
                lambda m, i: PasswordChanged(i, m.resume_token, m.sessions_ended),
            ),
            _encoder(_rid, 1, convert.password_changed_reply),
        ),
    ),
)
# Version 1 messages whose version 3 events carry more fields: the same protobuf messages.
_V3_LAYOUTS: dict[Opcode, Spec] = {
    Opcode.DELETE_ACCOUNT: (
        Opcode.DELETE_ACCOUNT,
        DeleteAccount,
        Kind.REQUEST,
        _decoder(
            chat.DeleteAccountRequest,
            _REQUEST,
            lambda m, i: DeleteAccount(i, m.username, m.password),
        ),
        _encoder(
            _rid,
            1,
            lambda e: chat.DeleteAccountRequest(username=e.username, password=e.password),
        ),
    ),
    Opcode.SIGNED_UP: (
        Opcode.SIGNED_UP,
        SignedUp,
        Kind.RESPONSE,
        _decoder(chat.LoginReply, _REQUEST, lambda m, i: SignedUp(i, m.pending, m.resume_token)),
        _encoder(
            _rid, 1, lambda e: chat.LoginReply(pending=e.pending, resume_token=e.resume_token)
        ),
    ),
    Opcode.LOGGED_IN: (
        Opcode.LOGGED_IN,
        LoggedIn,
        Kind.RESPONSE,
        _decoder(
            chat.LoginReply,
            _REQUEST,
            lambda m, i: LoggedIn(i, m.pending, m.resume_token, m.username),
        ),
        _encoder(_rid, 1, convert.login_reply),  # (its session_token stays empty)
    ),
}

CLIENT_MESSAGES_V3: tuple[Spec, ...] = (
    *(_V3_LAYOUTS.get(spec[0], spec) for spec in CLIENT_MESSAGES_V2),
    *_V3_NEW[0],
)
SERVER_MESSAGES_V3: tuple[Spec, ...] = (
    *(_V3_LAYOUTS.get(spec[0], spec) for spec in SERVER_MESSAGES_V2),
    *_V3_NEW[1],
)
#: version -> (client-to-server table, server-to-client table), as custom ``MESSAGES``.
MESSAGES: dict[int, tuple[tuple[Spec, ...], tuple[Spec, ...]]] = {
    **MESSAGES_V2,
    3: (CLIENT_MESSAGES_V3, SERVER_MESSAGES_V3),
    4: (CLIENT_MESSAGES_V3, SERVER_MESSAGES_V3),  # (version 4 adds an error code, no message)
}

__all__ = ["CLIENT_MESSAGES_V3", "MESSAGES", "MESSAGE_OF_V3", "SERVER_MESSAGES_V3"]
