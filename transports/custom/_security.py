"""Version 3 of the custom protocol: account security (PROTOCOL.md sections 6.14, 6.15, 7.18).

Its events and their coders, in the style of ``_messages`` (a decoder reads the fields after
the request id; an encoder appends the request id and the fields):

  * RESUME (0x0E): log in with a resume token instead of the password; answered by LOGGED_IN.
  * CHANGE_PASSWORD (0x0F) and its reply PASSWORD_CHANGED (0x8F).
  * The version 3 layouts of SIGNED_UP and LOGGED_IN (they end with the resume token, and
    LOGGED_IN then with the account's name, which a RESUME does not send) and of
    DELETE_ACCOUNT (it ends with the password).

``_messages`` builds the version 3 tables from these; nothing here knows about sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

from transports.custom._events import DeleteAccount, LoggedIn, SignedUp
from transports.custom._fields import (
    FrameReader,
    _malformed,
    _put_rid,
    _put_str,
    _put_v32,
    _request_id,
)

#: CHANGE_PASSWORD's flags byte: bit 0 asks the server to end the user's other sessions and
#: revoke every resume token. The other bits are reserved (0; anything else is MALFORMED).
END_OTHER_SESSIONS = 0x01


# -- events -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Resume:
    request_id: int
    token: str


@dataclass(frozen=True, slots=True)
class ChangePassword:
    request_id: int
    old_password: str
    new_password: str
    end_other_sessions: bool = True


@dataclass(frozen=True, slots=True)
class PasswordChanged:
    request_id: int
    resume_token: str
    sessions_ended: int = 0


# -- decoders ---------------------------------------------------------------------------------
def _dec_resume(r: FrameReader, rid: int) -> Resume:
    return Resume(_request_id(rid), r.text())


def _dec_change_password(r: FrameReader, rid: int) -> ChangePassword:
    rid = _request_id(rid)
    old, new, flags = r.text(), r.text(), r.u8()
    if flags & ~END_OTHER_SESSIONS:
        raise _malformed(f"CHANGE_PASSWORD flags 0x{flags:02X}: only bit 0 is defined")
    return ChangePassword(rid, old, new, bool(flags & END_OTHER_SESSIONS))


def _dec_password_changed(r: FrameReader, rid: int) -> PasswordChanged:
    return PasswordChanged(_request_id(rid), r.text(), r.v32())


def _dec_delete_account_v3(r: FrameReader, rid: int) -> DeleteAccount:
    return DeleteAccount(_request_id(rid), r.text(), r.text())


def _dec_signed_up_v3(r: FrameReader, rid: int) -> SignedUp:
    return SignedUp(_request_id(rid), r.v32(), r.text())


def _dec_logged_in_v3(r: FrameReader, rid: int) -> LoggedIn:
    return LoggedIn(_request_id(rid), r.v32(), r.text(), r.text())


# -- encoders ---------------------------------------------------------------------------------
def _enc_resume(e: Resume, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_str(out, e.token)


def _enc_change_password(e: ChangePassword, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_str(out, e.old_password)
    _put_str(out, e.new_password)
    out.append(END_OTHER_SESSIONS if e.end_other_sessions else 0)


def _enc_password_changed(e: PasswordChanged, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_str(out, e.resume_token)
    _put_v32(out, e.sessions_ended, "sessions_ended")


def _enc_delete_account_v3(e: DeleteAccount, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_str(out, e.username)
    _put_str(out, e.password)


def _enc_signed_up_v3(e: SignedUp, out: bytearray) -> None:
    _put_rid(out, e.request_id)
    _put_v32(out, e.pending, "pending")
    _put_str(out, e.resume_token)


def _enc_logged_in_v3(e: LoggedIn, out: bytearray) -> None:
    _enc_signed_up_v3(e, out)  # type: ignore[arg-type]  # (the same first three fields)
    _put_str(out, e.username)


__all__ = ["END_OTHER_SESSIONS", "ChangePassword", "PasswordChanged", "Resume"]
