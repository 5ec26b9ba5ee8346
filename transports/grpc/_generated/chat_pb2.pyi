from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    USERNAME_TAKEN: _ClassVar[ErrorReason]
    AUTH_FAILED: _ClassVar[ErrorReason]
    NOT_LOGGED_IN: _ClassVar[ErrorReason]
    ALREADY_LOGGED_IN: _ClassVar[ErrorReason]
    FORBIDDEN: _ClassVar[ErrorReason]
    INVALID_ARGUMENT: _ClassVar[ErrorReason]
    LIMIT_EXCEEDED: _ClassVar[ErrorReason]
    ALREADY_SUBSCRIBED: _ClassVar[ErrorReason]
    UNKNOWN_SESSION: _ClassVar[ErrorReason]
    LOGIN_FAILED: _ClassVar[ErrorReason]
    ACCOUNT_DELETED: _ClassVar[ErrorReason]
    SLOW_CONSUMER: _ClassVar[ErrorReason]
    SHUTDOWN: _ClassVar[ErrorReason]
    DISCONNECTED: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
USERNAME_TAKEN: ErrorReason
AUTH_FAILED: ErrorReason
NOT_LOGGED_IN: ErrorReason
ALREADY_LOGGED_IN: ErrorReason
FORBIDDEN: ErrorReason
INVALID_ARGUMENT: ErrorReason
LIMIT_EXCEEDED: ErrorReason
ALREADY_SUBSCRIBED: ErrorReason
UNKNOWN_SESSION: ErrorReason
LOGIN_FAILED: ErrorReason
ACCOUNT_DELETED: ErrorReason
SLOW_CONSUMER: ErrorReason
SHUTDOWN: ErrorReason
DISCONNECTED: ErrorReason

class SignupRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LoginReply(_message.Message):
    __slots__ = ("session_token", "username", "pending")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    username: str
    pending: int
    def __init__(self, session_token: _Optional[str] = ..., username: _Optional[str] = ..., pending: _Optional[int] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogoutReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAccountsRequest(_message.Message):
    __slots__ = ("pattern", "after", "limit")
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    pattern: str
    after: str
    limit: int
    def __init__(self, pattern: _Optional[str] = ..., after: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAccountsReply(_message.Message):
    __slots__ = ("usernames", "more")
    USERNAMES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    usernames: _containers.RepeatedScalarFieldContainer[str]
    more: bool
    def __init__(self, usernames: _Optional[_Iterable[str]] = ..., more: _Optional[bool] = ...) -> None: ...

class SendRequest(_message.Message):
    __slots__ = ("recipients", "body")
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    recipients: _containers.RepeatedScalarFieldContainer[str]
    body: str
    def __init__(self, recipients: _Optional[_Iterable[str]] = ..., body: _Optional[str] = ...) -> None: ...

class SendReply(_message.Message):
    __slots__ = ("message_id", "sent_at_ms", "unknown_recipients")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    sent_at_ms: int
    unknown_recipients: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, message_id: _Optional[int] = ..., sent_at_ms: _Optional[int] = ..., unknown_recipients: _Optional[_Iterable[str]] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("message_ids",)
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    message_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, message_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class AckReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteAccountRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class DeleteAccountReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("message_id", "sent_at_ms", "sender", "body")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    sent_at_ms: int
    sender: str
    body: str
    def __init__(self, message_id: _Optional[int] = ..., sent_at_ms: _Optional[int] = ..., sender: _Optional[str] = ..., body: _Optional[str] = ...) -> None: ...
