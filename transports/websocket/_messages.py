"""The websocket transport's codec: JSON text <-> core requests, results and pushes. No IO.

Everything here is fixed by CONTRACT.md (section numbers below refer to it); the server and the
client are thin drivers around these functions. Two vocabularies, as in the custom transport:
the wire's (JSON objects with an ``op``, an ``id``, ``ok``/``error``, ``push``) and the core's
(``core.requests`` values, ``LoginResult``/``SendResult``/..., ``Delivery``), translated here
and nowhere else. The error table (``WIRE_ERRORS``) is the one place that maps domain errors to
wire codes, read in both directions.

Two versions (section 2): ``wirechat.v2.json`` (history, conversations, read state, message
deletion and their pushes, Rules 19-25) and ``wirechat.v1.json``, which is v2 without any of
that. A v1 connection gets exactly v1's messages, byte for byte: the encoders take the
connection's ``version``. Version 2.1 (issue 13: resume tokens, change_password, the password
of delete_account) adds ops and optional members to ``wirechat.v2.json`` without a new
subprotocol (section 3 lets a minor version do that); a v1 connection sees none of it but may
send delete_account's ``password``. Version 2.2 adds the error code OVERLOADED, which an older
client must not meet, so a client says it knows it by offering ``wirechat.v2.2.json`` (section
14): the same messages as ``wirechat.v2.json``; every other connection gets LIMIT_EXCEEDED for
it, as before.

Decoding is strict where a lenient parser would let garbage reach the service: the top level is
an object, ``id`` an integer in JavaScript's safe range, every field has its JSON type (``true``
is not an integer, ``1.0`` is not an integer), strings are valid Unicode (a lone surrogate
escape such as ``"\\ud800"`` is refused), ``NaN``/``Infinity`` are not JSON. Unknown members are
ignored so that a later minor version may add optional ones (section 4).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable
from typing import Any

from core import limits
from core import requests as rq
from core.errors import (
    AlreadyLoggedIn,
    AuthFailed,
    ChatError,
    Forbidden,
    InvalidArgument,
    LimitExceeded,
    NotLoggedIn,
    Overloaded,
    ResumeRefused,
    SessionClosed,
    TooManyAttempts,
    UsernameTaken,
    WeakPassword,
)
from core.types import (
    AccountPage,
    CloseReason,
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
    SessionEvent,
)

#: The subprotocols (Sec-WebSocket-Protocol) of the two versions (section 2).
SUBPROTOCOL_V1 = "wirechat.v1.json"
SUBPROTOCOL_V2 = "wirechat.v2.json"
#: Version 2.2 (section 14): version 2's messages, and the error code OVERLOADED. A client
#: offers it to say it knows that code; it offers wirechat.v2.json too, which a server before
#: 2.2 selects.
SUBPROTOCOL_V2_2 = "wirechat.v2.2.json"
#: The contract's version 2, the subprotocol a client of it offers.
SUBPROTOCOL = SUBPROTOCOL_V2
#: What the server speaks, in its order of preference (the newest a client offers).
SUBPROTOCOLS = (SUBPROTOCOL_V2_2, SUBPROTOCOL_V2, SUBPROTOCOL_V1)
#: Subprotocol -> version number (of the layouts: 2.2's messages are version 2's).
VERSIONS = {SUBPROTOCOL_V1: 1, SUBPROTOCOL_V2: 2, SUBPROTOCOL_V2_2: 2}
#: What our client offers to speak a subprotocol, most preferred first: 2.2 with 2 behind it,
#: so that a server before 2.2 selects wirechat.v2.json (and sends LIMIT_EXCEEDED for a busy
#: refusal, as it always did). Any other subprotocol is offered alone.
OFFERS = {SUBPROTOCOL_V2_2: (SUBPROTOCOL_V2_2, SUBPROTOCOL_V2)}
#: The one URL path the server upgrades (section 2).
PATH = "/chat"

# -- limits (section 5) ----------------------------------------------------------------------
#: JSON may escape any character as ``\\uXXXX``: 6 bytes for one byte of UTF-8 (a control
#: character; every other character costs at most 6 bytes per 1-3 bytes of UTF-8, or 12 per 4).
ESCAPE_FACTOR = 6
#: Room for the envelope of the largest request (``{"id":...,"op":"send","to":[],"body":""}``).
ENVELOPE_BYTES = 1024
#: Largest message (bytes of UTF-8 JSON) a server accepts. The largest legitimate request is a
#: send of a 64 KiB body to 256 recipients with 32-character names, every character escaped:
#: 6 * 65 536 + 256 * (6 * 32 + 3) + 1 024 = 444 160 bytes. A larger message is refused with
#: close code 1009, unread, after the replies to the requests before it. (The websockets
#: library's default is 1 MiB; a browser accepts whatever the server sends.)
MAX_MESSAGE_BYTES = (
    ESCAPE_FACTOR * limits.MAX_BODY_BYTES
    + limits.MAX_RECIPIENTS * (ESCAPE_FACTOR * limits.MAX_USERNAME_CHARS + 3)
    + ENVELOPE_BYTES
)
#: A server message is never longer than MAX_MESSAGE_BYTES + S2C_SLACK: a send's reply repeats
#: at most its request's recipient names (no longer than the request wrote them) and adds a
#: message id, a timestamp and (v2) a conversation id: at most 83 bytes more than the shortest
#: request naming the same recipients (42 on a v1 connection). Pushes and pages are smaller
#: by construction (section 5).
S2C_SLACK = 128
#: Request ids are integers a JavaScript number holds exactly (Number.MAX_SAFE_INTEGER).
MAX_REQUEST_ID = 2**53 - 1
#: The largest server message (section 5). History and conversation pages are cut to fit
#: (``more`` set; always at least one item, which always fits: usernames need no escapes).
MAX_SERVER_MESSAGE_BYTES = MAX_MESSAGE_BYTES + S2C_SLACK
#: A ``deleted`` push names at most this many ids; a larger deletion (an account's purged
#: messages) comes as several pushes. 4096 ids of 19 digits are 80 KiB of JSON.
MAX_IDS_PER_DELETED_PUSH = 4096


class Close(enum.IntEnum):
    """The close codes the server sends (section 9). 1xxx are RFC 6455's, 4xxx ours."""

    NORMAL = 1000  # the client closed; the server answers in kind
    GOING_AWAY = 1001  # the server is shutting down (after a SHUTDOWN notice)
    UNSUPPORTED_DATA = 1003  # a binary frame: wirechat.v1.json is text only
    INVALID_TEXT = 1007  # a text message that is not UTF-8 (after the replies before it)
    TOO_BIG = 1009  # a message over MAX_MESSAGE_BYTES (after the replies before it)
    IDLE = 1008  # no login within the idle timeout (section 2.1)
    INTERNAL = 1011  # a bug of the server's (after an INTERNAL error reply)
    AUTH_FAILED = 4001  # after the error reply to a failed signup or login
    ACCOUNT_DELETED = 4002  # after delete_account's reply, or an ACCOUNT_DELETED notice
    SLOW_CONSUMER = 4003  # after a SLOW_CONSUMER notice (if the client still reads)
    PASSWORD_CHANGED = 4004  # after a PASSWORD_CHANGED notice (changed in another session)


# -- errors (section 8): the one table, read both ways ------------------------------------------
MALFORMED = "MALFORMED"
UNKNOWN_OP = "UNKNOWN_OP"
INTERNAL = "INTERNAL"

WIRE_ERRORS: tuple[tuple[str, type[ChatError]], ...] = (
    ("INVALID_ARGUMENT", InvalidArgument),
    ("LIMIT_EXCEEDED", LimitExceeded),
    ("USERNAME_TAKEN", UsernameTaken),
    ("AUTH_FAILED", AuthFailed),
    ("NOT_LOGGED_IN", NotLoggedIn),
    ("ALREADY_LOGGED_IN", AlreadyLoggedIn),
    ("FORBIDDEN", Forbidden),
    ("SESSION_CLOSED", SessionClosed),
    ("TOO_MANY_ATTEMPTS", TooManyAttempts),
    ("RESUME_REFUSED", ResumeRefused),
    ("WEAK_PASSWORD", WeakPassword),
    ("OVERLOADED", Overloaded),  # version 2.2: wirechat.v2.2.json connections only
)
#: Codes of version 2.2 -> what a connection of an older subprotocol gets instead (section
#: 14). Overloaded (a search while the loop runs behind, core.pacing) was a LIMIT_EXCEEDED
#: reply with its sentence before 2.2, and stays so, byte for byte, for a client that did not
#: offer wirechat.v2.2.json; the connection goes on either way.
SENT_AS: dict[str, str] = {"OVERLOADED": "LIMIT_EXCEEDED"}
#: Codes that are not domain errors: the request could not be read, or the server failed.
PROTOCOL_ERRORS = (MALFORMED, UNKNOWN_OP, INTERNAL)

#: Why the service ended a session -> (the notice pushed first, or None; the close code).
#: A logout does not end the connection, and a dropped connection has nobody to tell.
SESSION_ENDS: dict[CloseReason, tuple[str | None, Close]] = {
    CloseReason.AUTH_FAILED: (None, Close.AUTH_FAILED),  # the error reply is the notice
    CloseReason.ACCOUNT_DELETED: ("ACCOUNT_DELETED", Close.ACCOUNT_DELETED),
    CloseReason.SLOW_CONSUMER: ("SLOW_CONSUMER", Close.SLOW_CONSUMER),
    CloseReason.SHUTDOWN: ("SHUTDOWN", Close.GOING_AWAY),
    CloseReason.PASSWORD_CHANGED: ("PASSWORD_CHANGED", Close.PASSWORD_CHANGED),
}

_CODE_OF_ERROR = {cls: code for code, cls in WIRE_ERRORS}
_ERROR_OF_CODE = {code: cls for code, cls in WIRE_ERRORS}
_REASON_OF_NOTICE = {n: r for r, (n, _) in SESSION_ENDS.items() if n is not None}
_REASON_OF_CLOSE = {int(c): r for r, (_, c) in SESSION_ENDS.items()}


def code_for_error(exc: BaseException, subprotocol: str | None = None) -> str:
    """The wire code of a domain error (the most specific class wins) on a connection of
    ``subprotocol`` (None: the latest), a 2.2 code standing in as ``SENT_AS`` says on an older
    one; INTERNAL otherwise."""
    for cls in type(exc).__mro__:
        code = _CODE_OF_ERROR.get(cls)
        if code is not None:
            if subprotocol is None or subprotocol == SUBPROTOCOL_V2_2:
                return code
            return SENT_AS.get(code, code)
    return INTERNAL


def error_for_code(code: str, message: str) -> Exception:
    """The exception a client raises for an error reply: the domain error of its code, a plain
    ChatError for MALFORMED/UNKNOWN_OP or an unknown code, ConnectionError for INTERNAL (the
    server closes after it)."""
    cls = _ERROR_OF_CODE.get(code)
    if cls is not None:
        return cls(message) if message else cls()
    if code == INTERNAL:
        return ConnectionError(f"the server failed: {message}")
    return ChatError(f"{code}: {message}" if message else code)


def reason_for_notice(code: str) -> CloseReason | None:
    """The CloseReason a session_ended notice's code stands for."""
    return _REASON_OF_NOTICE.get(code)


def reason_for_close(code: int | None) -> CloseReason | None:
    """The CloseReason one of our 4xxx (or 1001) close codes stands for."""
    return _REASON_OF_CLOSE.get(code) if code is not None else None


# -- decoding requests (server side) ---------------------------------------------------------
class Malformed(Exception):
    """A message the server cannot turn into a request: answered with ``code`` on
    ``request_id`` (None when the id itself could not be read); the connection stays open."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_no_constant)
_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False
).encode
#: What ``_encode`` writes for one string (a list costs it a new C encoder per call; this not).
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


#: The decoder's C scanner (set by its __init__, absent from the stubs): what ``raw_decode``
#: calls, without raw_decode's Python frame around it.
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]


def _parse(text: str) -> Any:
    """One JSON text (ValueError if it is not). The scanner skips the whitespace checks that
    ``decode`` makes; texts with surrounding whitespace, or errors, take the long way (the
    scanner raises StopIteration where no value starts)."""
    try:
        value, end = _scan(text, 0)
        if end == len(text):
            return value
    except (ValueError, StopIteration):
        pass
    return _decoder.decode(text)


def _encode_names(names: tuple[str, ...]) -> str:
    return "[" + ",".join([_encode_str(name) for name in names]) + "]"


class _Fields:
    """Typed access to one request's members; every failure names the member."""

    __slots__ = ("obj", "rid")

    def __init__(self, obj: dict[str, Any], rid: int) -> None:
        self.obj = obj
        self.rid = rid

    def _get(self, key: str, default: Any) -> Any:
        value = self.obj.get(key, default)
        if value is _REQUIRED:
            raise Malformed(MALFORMED, f"the request needs the member {key!r}", self.rid)
        return value

    def text(self, key: str, default: Any = None) -> str:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, str):
            raise Malformed(MALFORMED, f"{key!r} must be a string", self.rid)
        _check_unicode(value, key, self.rid)
        return value

    def integer(self, key: str, default: Any = None) -> int:
        value = self._get(key, _REQUIRED if default is None else default)
        if not _is_int(value):
            raise Malformed(MALFORMED, f"{key!r} must be an integer", self.rid)
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise Malformed(MALFORMED, f"{key!r} must be true or false", self.rid)
        return value

    def texts(self, key: str, default: Any = None) -> tuple[str, ...]:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Malformed(MALFORMED, f"{key!r} must be an array of strings", self.rid)
        for item in value:
            _check_unicode(item, key, self.rid)
        return tuple(value)

    def integers(self, key: str) -> tuple[int, ...]:
        value = self._get(key, _REQUIRED)
        if not isinstance(value, list) or not all(_is_int(v) for v in value):
            raise Malformed(MALFORMED, f"{key!r} must be an array of integers", self.rid)
        return tuple(value)


_REQUIRED: Any = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_unicode(value: str, key: str, rid: int) -> None:
    # JSON can spell a lone surrogate ("\ud800"), which is no Unicode text and cannot be stored.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Malformed(
                "INVALID_ARGUMENT", f"{key!r} is not valid Unicode (a lone surrogate)", rid
            ) from None


def _decode_send(obj: dict[str, Any], rid: int) -> rq.Send:
    # The hot path (``decode_request`` calls it first): well-typed ASCII needs no
    # member-by-member checks (same result, faster), nor the _Fields that make them.
    to, body = obj.get("to"), obj.get("body")
    if type(body) is str and type(to) is list and body.isascii():
        for name in to:
            if type(name) is not str or not name.isascii():
                break
        else:
            return rq.Send(tuple(to), body)
    f = _Fields(obj, rid)
    return rq.Send(f.texts("to"), f.text("body"))


_REQUEST_DECODERS: dict[str, Callable[[_Fields], rq.Request[Any]]] = {
    "signup": lambda f: rq.Signup(f.text("username"), f.text("password")),
    "login": lambda f: rq.Login(f.text("username"), f.text("password")),
    "logout": lambda f: rq.Logout(),
    "list_accounts": lambda f: rq.ListAccounts(
        f.text("pattern", "*"), f.text("after", ""), f.integer("limit", 0)
    ),
    "send": lambda f: _decode_send(f.obj, f.rid),  # (not on the hot path: decode_request)
    "ack": lambda f: rq.Ack(f.integers("ids")),
    # "password" since version 2.1 (issue 13), on both versions: the server refuses a
    # deletion without it (AUTH_FAILED), so an old client must be able to add it.
    "delete_account": lambda f: rq.DeleteAccount(f.text("username"), f.text("password", "")),
    # version 2 (Rules 19-25)
    "list_conversations": lambda f: rq.ListConversations(
        f.integer("before_id", 0), f.integer("limit", 0)
    ),
    "read_history": lambda f: rq.ReadHistory(
        f.texts("participants", []),
        f.integer("before_id", 0),
        f.integer("limit", 0),
        f.integer("conversation_id", 0),
    ),
    "mark_read": lambda f: rq.MarkRead(f.integer("conversation_id"), f.integer("up_to_id")),
    "delete_messages": lambda f: rq.DeleteMessages(
        f.integers("ids"), f.boolean("for_everyone", False)
    ),
    # version 2.1 (issue 13): account security
    "resume": lambda f: rq.Resume(f.text("token")),
    "change_password": lambda f: rq.ChangePassword(
        f.text("old_password"), f.text("new_password"), f.boolean("end_other_sessions", True)
    ),
}
#: The ops a client may send, in CONTRACT.md's order.
OPS: tuple[str, ...] = tuple(_REQUEST_DECODERS)
#: The ops of version 2 only; on a v1 connection they are UNKNOWN_OP.
V2_OPS: tuple[str, ...] = (
    "list_conversations",
    "read_history",
    "mark_read",
    "delete_messages",
    "resume",
    "change_password",
)
V1_OPS: tuple[str, ...] = tuple(op for op in OPS if op not in V2_OPS)


def decode_request(text: str, version: int = 2) -> tuple[int, rq.Request[Any]]:
    """One text message of a ``version`` connection -> (request id, request).
    Raises :class:`Malformed`."""
    try:
        obj = _parse(text)
    except ValueError as exc:  # (JSONDecodeError, NaN, a 5 000-digit number)
        raise Malformed(MALFORMED, f"the message is not valid JSON: {exc}") from None
    except RecursionError:  # ([[[[...]]]] nested deeper than the parser's stack)
        raise Malformed(MALFORMED, "the message nests JSON too deeply") from None
    if not isinstance(obj, dict):
        raise Malformed(MALFORMED, "a request is a JSON object")
    rid = obj.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool) or not 0 <= rid <= MAX_REQUEST_ID:
        raise Malformed(MALFORMED, f"'id' must be an integer from 0 to {MAX_REQUEST_ID}")
    op = obj.get("op")
    if op == "send":  # (the hot path: a send is in every version)
        return rid, _decode_send(obj, rid)
    decoder = _REQUEST_DECODERS.get(op) if isinstance(op, str) else None
    if decoder is None or (version < 2 and op in V2_OPS):
        ops = OPS if version >= 2 else V1_OPS
        message = f"unknown op {op!r}; expected one of {', '.join(ops)}"
        if decoder is not None:
            message = f"{op!r} needs the subprotocol {SUBPROTOCOL_V2}; this connection speaks "
            message += SUBPROTOCOL_V1
        raise Malformed(UNKNOWN_OP, message, rid)
    return rid, decoder(_Fields(obj, rid))


# -- encoding replies and pushes (server side) -------------------------------------------------
def _size(text: str) -> int:
    """Bytes of ``text`` in UTF-8."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _encode_message(d: Delivery, push: str = "", *, full: bool = True, v2: bool = True) -> str:
    """One message object: a push (``push`` names its kind) or an item of a page (no ``push``;
    ``full=False`` leaves out conversation_id and participants, which the page names once).
    ``v2=False``: version 1's deliver, with none of version 2's members. Spelled out (the hot
    path of every delivery): exactly what ``_encode`` writes for the same members."""
    head = f'"push":{_encode_str(push)},' if push else ""
    text = (  # (ints as ``{n}``: see encode_reply)
        f'{{{head}"message_id":{d.message_id},"from":{_encode_str(d.sender)},'
        f'"body":{_encode_str(d.body)},"sent_at":{d.sent_at_ms}'
    )
    if full and v2:
        text += (
            f',"conversation_id":{d.conversation_id},"participants":{_encode_names(d.participants)}'
        )
    if d.sender_deleted and v2:
        text += ',"sender_deleted":true'
    return text + "}"


def _conversation_item(c: Conversation) -> str:
    deleted = ""
    if c.deleted_participants:
        deleted = f'"deleted_participants":{_encode_names(c.deleted_participants)},'
    return (
        f'{{"conversation_id":{c.conversation_id:d},'
        f'"participants":{_encode_names(c.participants)},{deleted}'
        f'"unread":{c.unread:d},"read_up_to":{c.read_up_to:d},'
        f'"last_message":{_encode_message(c.last_message, full=False)}}}'
    )


def _page_reply(request_id: int, head: str, key: str, items: Iterable[str], more: bool) -> str:
    """``{"id":..,"ok":{<head>"<key>":[items],"more":..}}``: as many items as fit in
    MAX_SERVER_MESSAGE_BYTES (at least one; ``more`` set if any is left out). ``items`` is
    consumed lazily, so a page of large messages never costs more than one message of memory
    beyond the reply."""
    shell = f'{{"id":{request_id:d},"ok":{{{head}"{key}":[],"more":false}}}}'
    room = MAX_SERVER_MESSAGE_BYTES - _size(shell)
    fitted: list[str] = []
    used = -1  # (n items take n - 1 commas)
    for item in items:
        used += _size(item) + 1
        if used > room and fitted:
            more = True
            break
        fitted.append(item)
    joined = ",".join(fitted)
    return f'{{"id":{request_id:d},"ok":{{{head}"{key}":[{joined}],"more":{_bool(more)}}}}}'


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _history_reply(request_id: int, page: HistoryPage) -> str:
    head = f'"conversation_id":{page.conversation_id:d},'
    head += f'"participants":{_encode_names(page.participants)},'
    if page.deleted_participants:
        head += f'"deleted_participants":{_encode_names(page.deleted_participants)},'
    head += f'"read_up_to":{page.read_up_to:d},'
    items = (_encode_message(d, full=False) for d in page.messages)
    return _page_reply(request_id, head, "messages", items, page.more)


def _result_members(result: Any) -> dict[str, Any]:
    match result:
        case None:
            return {}
        case LoginResult(username, pending):  # (version 1: see encode_reply)
            return {"username": username, "pending": pending}
        case PasswordChanged(resume_token, sessions_ended):
            return {"resume_token": resume_token, "sessions_ended": sessions_ended}
        case AccountPage(usernames, more):
            return {"usernames": list(usernames), "more": more}
        case ReadMarker(conversation_id, up_to_id, unread):
            return {"conversation_id": conversation_id, "up_to_id": up_to_id, "unread": unread}
    raise TypeError(f"no wire form for {result!r}")


def encode_reply(
    request_id: int, request: rq.Request[Any], result: Any, version: int = 2
) -> str | None:
    """The success reply to a request on a ``version`` connection, or None for an ack (it has
    none, section 6.6). A page is cut to the size limit (``more`` then says so)."""
    if type(result) is SendResult:  # the hot path, spelled out: what _encode would write
        # (ints as ``{n}``, not ``{n:d}``: the same digits for an int, without a format spec
        # to parse, ~800 instructions each; no unknown recipient, nearly every reply, is "[]")
        r = result
        unknown = _encode_names(r.unknown_recipients) if r.unknown_recipients else "[]"
        tail = f',"conversation_id":{r.conversation_id}' if version >= 2 else ""
        return (
            f'{{"id":{request_id},"ok":{{"message_id":{r.message_id},'
            f'"sent_at":{r.sent_at_ms},"unknown":{unknown}{tail}}}}}'
        )
    if isinstance(request, rq.Ack):
        return None
    if type(result) is LoginResult and version >= 2 and result.resume_token:
        # version 2.1 (issue 13): the resume token; a version-1 reply stays as it was
        return _encode(
            {
                "id": request_id,
                "ok": {
                    "username": result.username,
                    "pending": result.pending,
                    "resume_token": result.resume_token,
                },
            }
        )
    if type(result) is HistoryPage:
        return _history_reply(request_id, result)
    if type(result) is ConversationPage:
        items = (_conversation_item(c) for c in result.conversations)
        return _page_reply(request_id, "", "conversations", items, result.more)
    return _encode({"id": request_id, "ok": _result_members(result)})


def encode_error(request_id: int | None, code: str, message: str) -> str:
    """An error reply; ``request_id`` None when the request's id could not be read."""
    return _encode({"id": request_id, "error": {"code": code, "message": message}})


def encode_delivery(d: Delivery, version: int = 2) -> str:
    """The ``deliver`` push of one message on a ``version`` connection."""
    return _encode_message(d, "deliver", v2=version >= 2)


def encode_event(event: SessionEvent) -> list[str]:
    """The version-2 push(es) of one session event: a delivery, a "sent by you" copy, a read
    marker, or deleted ids (split into pushes of at most MAX_IDS_PER_DELETED_PUSH ids)."""
    match event:
        case Delivery():
            return [_encode_message(event, "deliver")]
        case SentCopy(message):
            return [_encode_message(message, "sent")]
        case ReadMarker(conversation_id, up_to_id, unread):
            return [
                f'{{"push":"read","conversation_id":{conversation_id:d},'
                f'"up_to_id":{up_to_id:d},"unread":{unread:d}}}'
            ]
        case MessagesDeleted(ids):
            step = MAX_IDS_PER_DELETED_PUSH
            return [
                f'{{"push":"deleted","ids":[{",".join(map(str, ids[i : i + step]))}]}}'
                for i in range(0, len(ids), step)
            ]
    raise TypeError(f"no wire form for {event!r}")


def encode_session_ended(code: str, message: str) -> str:
    """The notice that the server ended the session; a close frame follows."""
    return _encode({"push": "session_ended", "code": code, "message": message})


__all__ = [
    "MAX_IDS_PER_DELETED_PUSH",
    "MAX_MESSAGE_BYTES",
    "MAX_REQUEST_ID",
    "MAX_SERVER_MESSAGE_BYTES",
    "OFFERS",
    "OPS",
    "PATH",
    "S2C_SLACK",
    "SENT_AS",
    "SESSION_ENDS",
    "SUBPROTOCOL",
    "SUBPROTOCOLS",
    "SUBPROTOCOL_V1",
    "SUBPROTOCOL_V2",
    "SUBPROTOCOL_V2_2",
    "V1_OPS",
    "V2_OPS",
    "VERSIONS",
    "WIRE_ERRORS",
    "Close",
    "Malformed",
    "code_for_error",
    "decode_request",
    "encode_delivery",
    "encode_error",
    "encode_event",
    "encode_reply",
    "encode_session_ended",
    "error_for_code",
    "reason_for_close",
    "reason_for_notice",
]
