"""The cluster bus's wire format (core.nats_bus): one compact JSON object per event.

Kinds: ``d`` a delivery (with the recipient's ``seq`` and ``prev``); ``g`` one message to
several recipients (the message once, then per recipient its account id, seq and name; on a
subject every node hears, core.nats_bus); ``c`` a "sent by you" copy; ``r`` a read mark;
``x`` ids gone from the user's history; ``end`` end every session of the user (with
``reason``). A notice the store logged in the user's sequence carries its ``seq`` and
``prev`` too; one without them is handed on as it comes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core.types import CloseReason, Delivery, MessagesDeleted, Notice, ReadMarker, SentCopy


def encode(event: Delivery | Notice, seq: int = 0) -> tuple[str, dict[str, Any]]:
    """(subject suffix, JSON object) for an event."""
    if isinstance(event, Delivery):
        return "msg", {"t": "d", "seq": seq, "prev": seq - 1 if seq else 0, **_message(event)}
    if isinstance(event, SentCopy):
        return "msg", {"t": "c", **_message(event.message)}
    order = {"seq": seq, "prev": seq - 1} if seq else {}
    if isinstance(event, ReadMarker):
        return "ctl", {
            "t": "r",
            "conv": event.conversation_id,
            "up": event.up_to_id,
            "unread": event.unread,
            **order,
        }
    return "ctl", {"t": "x", "ids": list(event.message_ids), **order}


def encode_end(reason: CloseReason, seq: int = 0) -> dict[str, Any]:
    """The JSON object of "end every session of the user" (``seq``: its place in the
    user's sequence when the store logged it, 0 otherwise)."""
    return {"t": "end", "reason": reason.name, **({"seq": seq, "prev": seq - 1} if seq else {})}


def encode_group(copies: Sequence[tuple[int, int, Delivery]]) -> dict[str, Any]:
    """One message's deliveries to several recipients, (account id, seq, delivery) each, as
    one event: the message once, ``all`` its participants, ``to`` per recipient [account
    id, seq, the index of its own name in ``all``] (its delivery's ``participants`` are the
    others: ``all`` without that name)."""
    everyone = sorted({name for _, _, d in copies for name in d.participants})
    to = []
    for account_id, seq, d in copies:
        own = set(everyone).difference(d.participants)
        if len(own) != 1:  # (two or more recipients: each name is missing from one copy)
            raise ValueError("a group event needs each recipient's own name")
        to.append([account_id, seq, everyone.index(own.pop())])
    message = _message(copies[0][2])
    del message["others"]
    return {"t": "g", **message, "all": everyone, "to": to}


def decode_group(data: bytes) -> list[tuple[int, int, Delivery]]:
    """(account id, seq, delivery) per recipient of a ``g`` event."""
    o = json.loads(data.decode("utf-8", "surrogatepass"))
    if o["t"] != "g":
        raise ValueError(f"not a group event: {o['t']!r}")
    everyone: list[str] = o["all"]
    copies = []
    for account_id, seq, own in o["to"]:
        others = tuple(name for i, name in enumerate(everyone) if i != own)
        copies.append((account_id, seq, _delivery({**o, "others": others})))
    return copies


def _message(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.message_id,
        "from": d.sender,
        "body": d.body,
        "at": d.sent_at_ms,
        "others": list(d.participants),
        "sd": d.sender_deleted,
        "conv": d.conversation_id,
    }


def _delivery(o: dict[str, Any]) -> Delivery:
    return Delivery(o["id"], o["from"], o["body"], o["at"], tuple(o["others"]), o["sd"], o["conv"])


def to_wire(obj: dict[str, Any]) -> bytes:
    """The bytes published: compact JSON in UTF-8 as is (\\u escapes would triple a CJK
    body), with surrogatepass, as the service measured the body."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def decode(data: bytes) -> tuple[str, int, int, Delivery | Notice | CloseReason]:
    """(kind, seq, prev, event) of a published event; kind "end" carries a CloseReason."""
    o = json.loads(data.decode("utf-8", "surrogatepass"))
    kind = o["t"]
    if kind == "d":
        return kind, o["seq"], o["prev"], _delivery(o)
    if kind == "c":
        return kind, 0, 0, SentCopy(_delivery(o))
    seq, prev = o.get("seq", 0), o.get("prev", 0)  # (notices: only when logged)
    if kind == "r":
        return kind, seq, prev, ReadMarker(o["conv"], o["up"], o["unread"])
    if kind == "x":
        return kind, seq, prev, MessagesDeleted(tuple(o["ids"]))
    if kind == "end":
        return kind, seq, prev, CloseReason[o["reason"]]
    raise ValueError(f"unknown bus event kind {kind!r}")


__all__ = ["decode", "decode_group", "encode", "encode_end", "encode_group", "to_wire"]
