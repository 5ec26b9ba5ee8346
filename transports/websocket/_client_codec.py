"""The websocket transport's codec, client side: requests -> JSON text, server messages ->
core values. No IO. The server side and the tables are ``_messages``; CONTRACT.md is the spec.

Decoding is strict about what a client relies on (types of ids, strings, booleans) and lenient
about what it does not know: members and push kinds of a later minor version are ignored
(section 3). Version 1 server messages decode too (their missing members take defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import requests as rq
from core.types import (
    AccountPage,
    Conversation,
    ConversationPage,
    Delivery,
    HistoryPage,
    LoginResult,
    MessagesDeleted,
    PasswordChanged,
    ReadMarker,
    SendResult,
    SentCopy,
)
from transports.websocket._messages import _encode, _encode_names, _encode_str, _is_int, _parse


def encode_request(request_id: int, request: rq.Request[Any]) -> str:
    """One request as its text message."""
    if type(request) is rq.Send:  # the hot path, spelled out: what _encode would write
        to, body = _encode_names(request.recipients), _encode_str(request.body)
        return f'{{"id":{request_id:d},"op":"send","to":{to},"body":{body}}}'
    members: dict[str, Any]
    match request:
        case rq.Signup(username, password):
            members = {"op": "signup", "username": username, "password": password}
        case rq.Login(username, password):
            members = {"op": "login", "username": username, "password": password}
        case rq.Logout():
            members = {"op": "logout"}
        case rq.ListAccounts(pattern, after, limit):
            members = {"op": "list_accounts", "pattern": pattern, "after": after, "limit": limit}
        case rq.Send(recipients, body):
            members = {"op": "send", "to": list(recipients), "body": body}
        case rq.Ack(ids):
            members = {"op": "ack", "ids": list(ids)}
        case rq.DeleteAccount(username, password):
            members = {"op": "delete_account", "username": username, "password": password}
        # version 2: members at their default (0, empty, false) are left out (section 6)
        case rq.ListConversations(before_id, limit):
            members = _non_default(op="list_conversations", before_id=before_id, limit=limit)
        case rq.ReadHistory(participants, before_id, limit, conversation_id):
            members = {"op": "read_history"}
            if conversation_id:
                members["conversation_id"] = conversation_id
            if participants or not conversation_id:  # (both: the server says which is wrong)
                members["participants"] = list(participants)
            members |= _non_default(before_id=before_id, limit=limit)
        case rq.MarkRead(conversation_id, up_to_id):
            members = {"op": "mark_read", "conversation_id": conversation_id, "up_to_id": up_to_id}
        case rq.DeleteMessages(ids, for_everyone):
            members = _non_default(op="delete_messages", ids=list(ids), for_everyone=for_everyone)
        # version 2.1 (issue 13)
        case rq.Resume(token):
            members = {"op": "resume", "token": token}
        case rq.ChangePassword(old_password, new_password, end_other_sessions):
            members = {
                "op": "change_password",
                "old_password": old_password,
                "new_password": new_password,
                "end_other_sessions": end_other_sessions,
            }
        case _:
            raise TypeError(f"the websocket transport cannot carry {request!r}")
    return _encode({"id": request_id, **members})


def _non_default(**members: Any) -> dict[str, Any]:
    return {key: value for key, value in members.items() if value or key == "ids"}


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply: ``ok`` (the members of its ``ok`` object) or ``code``/``message``."""

    request_id: int | None
    ok: dict[str, Any] | None
    code: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class SessionEnded:
    code: str
    message: str


#: What a server message decodes to; None for a push this version does not know.
ServerMessage = Reply | Delivery | SentCopy | ReadMarker | MessagesDeleted | SessionEnded | None


class BadServerMessage(Exception):
    """The server sent something CONTRACT.md does not allow (a client gives up the connection)."""


def decode_server_message(text: str) -> ServerMessage:
    """One text message from the server. Raises :class:`BadServerMessage`."""
    try:
        obj = _object(_parse(text))
        if "push" in obj:
            kind = obj["push"]
            if kind == "deliver":
                return _message(obj)
            if kind == "session_ended":
                return SessionEnded(str(obj["code"]), str(obj.get("message", "")))
            if kind == "sent":
                return SentCopy(_message(obj))
            if kind == "read":
                return _read_marker(obj)
            if kind == "deleted":
                return MessagesDeleted(_ints(obj["ids"]))
            return None  # a push of a later minor version: ignored (section 3)
        rid = None if obj["id"] is None else _int(obj["id"])  # (null: an unreadable request's)
        if "ok" in obj:
            return Reply(rid, _object(obj["ok"]))
        error = _object(obj["error"])
        return Reply(rid, None, str(error["code"]), str(error.get("message", "")))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise BadServerMessage(f"unreadable server message {text[:80]!r}: {exc!r}") from None


def _int(value: Any) -> int:
    if not _is_int(value):
        raise TypeError(f"{value!r} is not an integer")
    return int(value)


def _array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{value!r} is not an array")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{value!r} is not an object")
    return value


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(_int(v) for v in _array(value))


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(_str(v) for v in _array(value))


def _message(obj: Any, page: tuple[int, tuple[str, ...]] | None = None) -> Delivery:
    """A message object: a push, or an item of a ``page`` = (conversation id, participants)
    that names those once for all its messages. Version 1's deliver has neither (0, ())."""
    obj = _object(obj)
    if page is None:
        page = (_int(obj.get("conversation_id", 0)), _strs(obj.get("participants", [])))
    deleted = obj.get("sender_deleted", False)
    if not isinstance(deleted, bool):
        raise TypeError("sender_deleted is true or false")
    return Delivery(
        _int(obj["message_id"]),
        _str(obj["from"]),
        _str(obj["body"]),
        _int(obj["sent_at"]),
        page[1],
        deleted,
        page[0],
    )


def _read_marker(obj: dict[str, Any]) -> ReadMarker:
    obj = _object(obj)
    return ReadMarker(_int(obj["conversation_id"]), _int(obj["up_to_id"]), _int(obj["unread"]))


def _conversation(obj: Any) -> Conversation:
    obj = _object(obj)
    conversation_id, participants = _int(obj["conversation_id"]), _strs(obj["participants"])
    return Conversation(
        conversation_id,
        participants,
        _message(obj["last_message"], (conversation_id, participants)),
        _int(obj["unread"]),
        _int(obj["read_up_to"]),
        _strs(obj.get("deleted_participants", [])),
    )


def _history_page(ok: dict[str, Any]) -> HistoryPage:
    conversation_id, participants = _int(ok["conversation_id"]), _strs(ok["participants"])
    page = (conversation_id, participants)
    return HistoryPage(
        conversation_id,
        participants,
        tuple(_message(m, page) for m in _array(ok["messages"])),
        _boolean(ok["more"]),
        _strs(ok.get("deleted_participants", [])),
        _int(ok.get("read_up_to", 0)),
    )


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value


def decode_result(request: rq.Request[Any], ok: dict[str, Any]) -> Any:
    """The core result an ``ok`` reply to ``request`` carries. Raises :class:`BadServerMessage`."""
    try:
        if isinstance(request, rq.Signup | rq.Login | rq.Resume):
            # (no resume_token from a version-1 connection or a server before 2.1)
            token = _str(ok.get("resume_token", ""))
            return LoginResult(_str(ok["username"]), _int(ok["pending"]), token)
        if isinstance(request, rq.ChangePassword):
            return PasswordChanged(_str(ok["resume_token"]), _int(ok["sessions_ended"]))
        if isinstance(request, rq.Send):
            return SendResult(
                _int(ok["message_id"]),
                _int(ok["sent_at"]),
                _strs(ok.get("unknown", [])),
                _int(ok.get("conversation_id", 0)),
            )
        if isinstance(request, rq.ListAccounts):
            return AccountPage(_strs(ok["usernames"]), _boolean(ok["more"]))
        if isinstance(request, rq.ListConversations):
            conversations = tuple(_conversation(c) for c in _array(ok["conversations"]))
            return ConversationPage(conversations, _boolean(ok["more"]))
        if isinstance(request, rq.ReadHistory):
            return _history_page(ok)
        if isinstance(request, rq.MarkRead):
            return _read_marker(ok)
        return None
    except (KeyError, TypeError, ValueError) as exc:
        raise BadServerMessage(f"unreadable reply to {type(request).__name__}: {exc}") from None


__all__ = [
    "BadServerMessage",
    "Reply",
    "ServerMessage",
    "SessionEnded",
    "decode_result",
    "decode_server_message",
    "encode_request",
]
