from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

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
    OVERLOADED: _ClassVar[ErrorReason]
    TOO_MANY_ATTEMPTS: _ClassVar[ErrorReason]
    RESUME_REFUSED: _ClassVar[ErrorReason]
    WEAK_PASSWORD: _ClassVar[ErrorReason]
    PASSWORD_CHANGED: _ClassVar[ErrorReason]
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
OVERLOADED: ErrorReason
TOO_MANY_ATTEMPTS: ErrorReason
RESUME_REFUSED: ErrorReason
WEAK_PASSWORD: ErrorReason
PASSWORD_CHANGED: ErrorReason

class SignupRequest(_message.Message):
    __slots__ = ("username", "password", "notices")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    notices: bool
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., notices: _Optional[bool] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("username", "password", "notices")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    notices: bool
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., notices: _Optional[bool] = ...) -> None: ...

class LoginReply(_message.Message):
    __slots__ = ("session_token", "username", "pending", "resume_token")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    username: str
    pending: int
    resume_token: str
    def __init__(self, session_token: _Optional[str] = ..., username: _Optional[str] = ..., pending: _Optional[int] = ..., resume_token: _Optional[str] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("resume_token", "notices")
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    resume_token: str
    notices: bool
    def __init__(self, resume_token: _Optional[str] = ..., notices: _Optional[bool] = ...) -> None: ...

class ChangePasswordRequest(_message.Message):
    __slots__ = ("old_password", "new_password", "end_other_sessions")
    OLD_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    END_OTHER_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    old_password: str
    new_password: str
    end_other_sessions: bool
    def __init__(self, old_password: _Optional[str] = ..., new_password: _Optional[str] = ..., end_other_sessions: _Optional[bool] = ...) -> None: ...

class ChangePasswordReply(_message.Message):
    __slots__ = ("resume_token", "sessions_ended")
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_ENDED_FIELD_NUMBER: _ClassVar[int]
    resume_token: str
    sessions_ended: int
    def __init__(self, resume_token: _Optional[str] = ..., sessions_ended: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("message_id", "sent_at_ms", "unknown_recipients", "conversation_id")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    sent_at_ms: int
    unknown_recipients: _containers.RepeatedScalarFieldContainer[str]
    conversation_id: int
    def __init__(self, message_id: _Optional[int] = ..., sent_at_ms: _Optional[int] = ..., unknown_recipients: _Optional[_Iterable[str]] = ..., conversation_id: _Optional[int] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("message_ids",)
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    message_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, message_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class AckReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteAccountRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class DeleteAccountReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("message_id", "sent_at_ms", "sender", "body", "participants", "sender_deleted", "conversation_id")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    SENDER_DELETED_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    sent_at_ms: int
    sender: str
    body: str
    participants: _containers.RepeatedScalarFieldContainer[str]
    sender_deleted: bool
    conversation_id: int
    def __init__(self, message_id: _Optional[int] = ..., sent_at_ms: _Optional[int] = ..., sender: _Optional[str] = ..., body: _Optional[str] = ..., participants: _Optional[_Iterable[str]] = ..., sender_deleted: _Optional[bool] = ..., conversation_id: _Optional[int] = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ("delivery", "sent_copy", "read_marker", "gone")
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    SENT_COPY_FIELD_NUMBER: _ClassVar[int]
    READ_MARKER_FIELD_NUMBER: _ClassVar[int]
    GONE_FIELD_NUMBER: _ClassVar[int]
    delivery: Delivery
    sent_copy: Delivery
    read_marker: ReadMarker
    gone: MessagesDeleted
    def __init__(self, delivery: _Optional[_Union[Delivery, _Mapping]] = ..., sent_copy: _Optional[_Union[Delivery, _Mapping]] = ..., read_marker: _Optional[_Union[ReadMarker, _Mapping]] = ..., gone: _Optional[_Union[MessagesDeleted, _Mapping]] = ...) -> None: ...

class ListConversationsRequest(_message.Message):
    __slots__ = ("before_id", "limit")
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    before_id: int
    limit: int
    def __init__(self, before_id: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("conversation_id", "participants", "last_message", "unread", "read_up_to", "deleted_participants")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    LAST_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    READ_UP_TO_FIELD_NUMBER: _ClassVar[int]
    DELETED_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    conversation_id: int
    participants: _containers.RepeatedScalarFieldContainer[str]
    last_message: Delivery
    unread: int
    read_up_to: int
    deleted_participants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, conversation_id: _Optional[int] = ..., participants: _Optional[_Iterable[str]] = ..., last_message: _Optional[_Union[Delivery, _Mapping]] = ..., unread: _Optional[int] = ..., read_up_to: _Optional[int] = ..., deleted_participants: _Optional[_Iterable[str]] = ...) -> None: ...

class ListConversationsReply(_message.Message):
    __slots__ = ("conversations", "more")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[Conversation]
    more: bool
    def __init__(self, conversations: _Optional[_Iterable[_Union[Conversation, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class ReadHistoryRequest(_message.Message):
    __slots__ = ("participants", "before_id", "limit", "conversation_id")
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    participants: _containers.RepeatedScalarFieldContainer[str]
    before_id: int
    limit: int
    conversation_id: int
    def __init__(self, participants: _Optional[_Iterable[str]] = ..., before_id: _Optional[int] = ..., limit: _Optional[int] = ..., conversation_id: _Optional[int] = ...) -> None: ...

class ReadHistoryReply(_message.Message):
    __slots__ = ("conversation_id", "participants", "messages", "more", "deleted_participants", "read_up_to")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    DELETED_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    READ_UP_TO_FIELD_NUMBER: _ClassVar[int]
    conversation_id: int
    participants: _containers.RepeatedScalarFieldContainer[str]
    messages: _containers.RepeatedCompositeFieldContainer[Delivery]
    more: bool
    deleted_participants: _containers.RepeatedScalarFieldContainer[str]
    read_up_to: int
    def __init__(self, conversation_id: _Optional[int] = ..., participants: _Optional[_Iterable[str]] = ..., messages: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., more: _Optional[bool] = ..., deleted_participants: _Optional[_Iterable[str]] = ..., read_up_to: _Optional[int] = ...) -> None: ...

class MarkReadRequest(_message.Message):
    __slots__ = ("conversation_id", "up_to_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    UP_TO_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: int
    up_to_id: int
    def __init__(self, conversation_id: _Optional[int] = ..., up_to_id: _Optional[int] = ...) -> None: ...

class ReadMarker(_message.Message):
    __slots__ = ("conversation_id", "up_to_id", "unread")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    UP_TO_ID_FIELD_NUMBER: _ClassVar[int]
    UNREAD_FIELD_NUMBER: _ClassVar[int]
    conversation_id: int
    up_to_id: int
    unread: int
    def __init__(self, conversation_id: _Optional[int] = ..., up_to_id: _Optional[int] = ..., unread: _Optional[int] = ...) -> None: ...

class DeleteMessagesRequest(_message.Message):
    __slots__ = ("message_ids", "for_everyone")
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    FOR_EVERYONE_FIELD_NUMBER: _ClassVar[int]
    message_ids: _containers.RepeatedScalarFieldContainer[int]
    for_everyone: bool
    def __init__(self, message_ids: _Optional[_Iterable[int]] = ..., for_everyone: _Optional[bool] = ...) -> None: ...

class DeleteMessagesReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MessagesDeleted(_message.Message):
    __slots__ = ("message_ids",)
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    message_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, message_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("request_id", "signup", "login", "logout", "list_accounts", "send", "ack", "delete_account", "list_conversations", "read_history", "mark_read", "delete_messages", "resume", "change_password")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNUP_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    LOGOUT_FIELD_NUMBER: _ClassVar[int]
    LIST_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    SEND_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    DELETE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    LIST_CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    READ_HISTORY_FIELD_NUMBER: _ClassVar[int]
    MARK_READ_FIELD_NUMBER: _ClassVar[int]
    DELETE_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    CHANGE_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    signup: SignupRequest
    login: LoginRequest
    logout: LogoutRequest
    list_accounts: ListAccountsRequest
    send: SendRequest
    ack: AckRequest
    delete_account: DeleteAccountRequest
    list_conversations: ListConversationsRequest
    read_history: ReadHistoryRequest
    mark_read: MarkReadRequest
    delete_messages: DeleteMessagesRequest
    resume: ResumeRequest
    change_password: ChangePasswordRequest
    def __init__(self, request_id: _Optional[int] = ..., signup: _Optional[_Union[SignupRequest, _Mapping]] = ..., login: _Optional[_Union[LoginRequest, _Mapping]] = ..., logout: _Optional[_Union[LogoutRequest, _Mapping]] = ..., list_accounts: _Optional[_Union[ListAccountsRequest, _Mapping]] = ..., send: _Optional[_Union[SendRequest, _Mapping]] = ..., ack: _Optional[_Union[AckRequest, _Mapping]] = ..., delete_account: _Optional[_Union[DeleteAccountRequest, _Mapping]] = ..., list_conversations: _Optional[_Union[ListConversationsRequest, _Mapping]] = ..., read_history: _Optional[_Union[ReadHistoryRequest, _Mapping]] = ..., mark_read: _Optional[_Union[MarkReadRequest, _Mapping]] = ..., delete_messages: _Optional[_Union[DeleteMessagesRequest, _Mapping]] = ..., resume: _Optional[_Union[ResumeRequest, _Mapping]] = ..., change_password: _Optional[_Union[ChangePasswordRequest, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("request_id", "logged_in", "logged_out", "accounts", "sent", "deleted", "error", "delivery", "conversations", "history", "marked_read", "messages_deleted", "sent_copy", "read_marker", "gone", "password_changed")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LOGGED_IN_FIELD_NUMBER: _ClassVar[int]
    LOGGED_OUT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    MARKED_READ_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_DELETED_FIELD_NUMBER: _ClassVar[int]
    SENT_COPY_FIELD_NUMBER: _ClassVar[int]
    READ_MARKER_FIELD_NUMBER: _ClassVar[int]
    GONE_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_CHANGED_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    logged_in: LoginReply
    logged_out: LogoutReply
    accounts: ListAccountsReply
    sent: SendReply
    deleted: DeleteAccountReply
    error: StreamError
    delivery: Delivery
    conversations: ListConversationsReply
    history: ReadHistoryReply
    marked_read: ReadMarker
    messages_deleted: DeleteMessagesReply
    sent_copy: Delivery
    read_marker: ReadMarker
    gone: MessagesDeleted
    password_changed: ChangePasswordReply
    def __init__(self, request_id: _Optional[int] = ..., logged_in: _Optional[_Union[LoginReply, _Mapping]] = ..., logged_out: _Optional[_Union[LogoutReply, _Mapping]] = ..., accounts: _Optional[_Union[ListAccountsReply, _Mapping]] = ..., sent: _Optional[_Union[SendReply, _Mapping]] = ..., deleted: _Optional[_Union[DeleteAccountReply, _Mapping]] = ..., error: _Optional[_Union[StreamError, _Mapping]] = ..., delivery: _Optional[_Union[Delivery, _Mapping]] = ..., conversations: _Optional[_Union[ListConversationsReply, _Mapping]] = ..., history: _Optional[_Union[ReadHistoryReply, _Mapping]] = ..., marked_read: _Optional[_Union[ReadMarker, _Mapping]] = ..., messages_deleted: _Optional[_Union[DeleteMessagesReply, _Mapping]] = ..., sent_copy: _Optional[_Union[Delivery, _Mapping]] = ..., read_marker: _Optional[_Union[ReadMarker, _Mapping]] = ..., gone: _Optional[_Union[MessagesDeleted, _Mapping]] = ..., password_changed: _Optional[_Union[ChangePasswordReply, _Mapping]] = ...) -> None: ...

class StreamError(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: ErrorReason
    message: str
    def __init__(self, reason: _Optional[_Union[ErrorReason, str]] = ..., message: _Optional[str] = ...) -> None: ...
