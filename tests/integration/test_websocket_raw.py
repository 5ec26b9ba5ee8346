"""Clients written from CONTRACT.md alone, against a real server process.

They use only the ``websockets`` library and ``json`` (none of wirechat's code): what someone with
the contract and a browser's ``new WebSocket(url, "wirechat.v1.json")`` would write.

* Version 1 (the contract as it was first written, unchanged): two users sign up, one sends, the
  other receives the ``deliver`` push and acks it, and the ack's effect is seen at the next
  login; then a pending message arrives after a login's reply, and a deletion ends with the
  documented close code. A v1 connection beside a v2 one of the same user gets v1's messages only.
* Version 2: every history operation (list_conversations, read_history with its cursor,
  mark_read, delete_messages) and every new push (``sent``, ``read``, ``deleted``, the new
  members of ``deliver``), with the errors the contract names.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from wirechat.launch import ServerProcess

pytestmark = pytest.mark.timeout(60)
WAIT = 5.0


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc = ServerProcess(["websocket"], tmp_path_factory.mktemp("ws-raw") / "db.sqlite")
    proc.start()
    try:
        host, port = proc.addresses["websocket"]
        yield f"ws://{host}:{port}/chat"  # section 2
    finally:
        proc.stop()


class RawClient:
    """Section 4: requests carry an id; replies echo it; pushes carry "push"."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 1
        self.pushes: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, subprotocol: str = "wirechat.v1.json") -> RawClient:
        ws = await connect(url, subprotocols=[Subprotocol(subprotocol)])
        assert ws.subprotocol == subprotocol
        return cls(ws)

    async def send_request(self, op: str, **members: Any) -> int:
        rid, self.next_id = self.next_id, self.next_id + 1
        await self.ws.send(json.dumps({"id": rid, "op": op, **members}))
        return rid

    async def call(self, op: str, **members: Any) -> dict[str, Any]:
        """One request and its reply (pushes that arrive meanwhile are kept)."""
        rid = await self.send_request(op, **members)
        while True:
            message = await self.receive()
            if "push" in message:
                self.pushes.append(message)
                continue
            assert message["id"] == rid, "replies come in request order (section 7)"
            return message

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            message = json.loads(await self.ws.recv())
        assert isinstance(message, dict)
        return message

    async def push(self) -> dict[str, Any]:
        if self.pushes:
            return self.pushes.pop(0)
        message = await self.receive()
        assert "push" in message, message
        return message

    async def push_of(self, kind: str) -> dict[str, Any]:
        """The next push of ``kind`` (others that come first are kept, in order)."""
        for i, message in enumerate(self.pushes):
            if message["push"] == kind:
                return self.pushes.pop(i)
        for _ in range(50):  # (bounded)
            message = await self.receive()
            assert "push" in message, message
            if message["push"] == kind:
                return message
            self.pushes.append(message)
        raise AssertionError(f"no {kind} push")


async def test_signup_send_receive_ack(url: str) -> None:
    tag = secrets.token_hex(4)
    alice_name, bob_name = f"alice_{tag}", f"bob_{tag}"
    alice, bob = await RawClient.open(url), await RawClient.open(url)

    assert await alice.call("signup", username=alice_name, password="pw-secret 1") == {
        "id": 1,
        "ok": {"username": alice_name, "pending": 0},
    }
    assert (await bob.call("signup", username=bob_name, password="pw-secret 2"))["ok"][
        "pending"
    ] == 0

    sent = await alice.call("send", to=[bob_name, f"nobody_{tag}"], body="hello, Bob ✓")
    assert sent["ok"]["unknown"] == [f"nobody_{tag}"]
    message_id = sent["ok"]["message_id"]
    assert isinstance(message_id, int) and isinstance(sent["ok"]["sent_at"], int)

    deliver = await bob.push()
    assert deliver == {
        "push": "deliver",
        "message_id": message_id,
        "from": alice_name,
        "body": "hello, Bob ✓",
        "sent_at": sent["ok"]["sent_at"],
    }
    # An ack has no success reply (section 6.6): the next message is the next request's reply.
    await bob.send_request("ack", ids=[message_id])
    page = await bob.call("list_accounts", pattern=f"*_{tag}")
    assert page["ok"] == {"usernames": [alice_name, bob_name], "more": False}
    await bob.ws.close()

    # Acked: nothing is pending at the next login. A message sent meanwhile is.
    later = await alice.call("send", to=[bob_name], body="while you were away")
    bob = await RawClient.open(url)
    login = await bob.call("login", username=bob_name, password="pw-secret 2")
    assert login["ok"] == {"username": bob_name, "pending": 1}
    deliver = await bob.push()  # (after the login's reply, section 7)
    assert (deliver["message_id"], deliver["body"]) == (
        later["ok"]["message_id"],
        "while you were away",
    )
    await bob.send_request("ack", ids=[deliver["message_id"]])

    # Deletion: the reply, then close 4002 here and the ACCOUNT_DELETED notice elsewhere.
    laptop = await RawClient.open(url)
    await laptop.call("login", username=alice_name, password="pw-secret 1")
    assert await alice.call("delete_account", username=alice_name, password="pw-secret 1") == {
        "id": 4,
        "ok": {},
    }
    with pytest.raises(ConnectionClosed):
        await alice.receive()
    assert alice.ws.close_code == 4002
    notice = await laptop.push()
    assert notice == {
        "push": "session_ended",
        "code": "ACCOUNT_DELETED",
        "message": "the account was deleted",
    }
    with pytest.raises(ConnectionClosed):
        await laptop.receive()
    assert laptop.ws.close_code == 4002
    await bob.ws.close()


async def test_a_v1_connection_beside_a_v2_one_gets_only_v1_messages(url: str) -> None:
    tag = secrets.token_hex(4)
    alice_name, bob_name = f"alice_{tag}", f"bob_{tag}"
    alice = await RawClient.open(url, "wirechat.v2.json")
    await alice.call("signup", username=alice_name, password="pw-secret 1")
    old = await RawClient.open(url)  # a v1 client, from before history existed
    await old.call("signup", username=bob_name, password="pw-secret 2")
    new = await RawClient.open(url, "wirechat.v2.json")
    await new.call("login", username=bob_name, password="pw-secret 2")

    sent = await alice.call("send", to=[bob_name], body="hi")
    assert set(sent["ok"]) == {"message_id", "sent_at", "unknown", "conversation_id"}
    assert set((await old.push()).keys()) == {"push", "message_id", "from", "body", "sent_at"}
    delivered = await new.push_of("deliver")
    assert delivered["participants"] == [alice_name]
    assert delivered["conversation_id"] == sent["ok"]["conversation_id"]

    # What bob does on the v2 device is told to his other v2 devices only.
    mine = await old.call("send", to=[alice_name], body="from the old client")
    assert set(mine["ok"]) == {"message_id", "sent_at", "unknown"}  # (version 1's reply)
    assert (await new.push_of("sent"))["body"] == "from the old client"
    conversation = sent["ok"]["conversation_id"]
    await new.call("mark_read", conversation_id=conversation, up_to_id=sent["ok"]["message_id"])
    await alice.call("delete_messages", ids=[sent["ok"]["message_id"]], for_everyone=True)
    assert (await new.push_of("deleted"))["ids"] == [sent["ok"]["message_id"]]
    refused = await old.call("list_conversations")
    assert refused["error"]["code"] == "UNKNOWN_OP"
    assert old.pushes == []  # no sent, read or deleted push ever reached the v1 connection
    for client in (alice, old, new):
        await client.ws.close()


async def test_every_history_operation_and_push_of_version_2(url: str) -> None:
    tag = secrets.token_hex(4)
    alice_name, bob_name, carol_name = f"alice_{tag}", f"bob_{tag}", f"carol_{tag}"
    laptop = await RawClient.open(url, "wirechat.v2.json")
    await laptop.call("signup", username=alice_name, password="pw-secret 1")
    phone = await RawClient.open(url, "wirechat.v2.json")
    await phone.call("login", username=alice_name, password="pw-secret 1")
    bob = await RawClient.open(url, "wirechat.v2.json")
    await bob.call("signup", username=bob_name, password="pw-secret 2")
    bob_phone = await RawClient.open(url, "wirechat.v2.json")
    await bob_phone.call("login", username=bob_name, password="pw-secret 2")
    carol = await RawClient.open(url, "wirechat.v2.json")
    await carol.call("signup", username=carol_name, password="pw-secret 3")

    # send to a group: the reply names the conversation; the phone gets "sent by you" (6.15).
    sent = (await laptop.call("send", to=[bob_name, carol_name], body="lunch at 12?"))["ok"]
    conversation, first = sent["conversation_id"], sent["message_id"]
    assert isinstance(conversation, int) and conversation > 0
    assert await phone.push_of("sent") == {
        "push": "sent",
        "message_id": first,
        "from": alice_name,
        "body": "lunch at 12?",
        "sent_at": sent["sent_at"],
        "conversation_id": conversation,
        "participants": [bob_name, carol_name],
    }
    # deliver carries the conversation and the other participants (6.8): reply to all.
    delivered = await carol.push_of("deliver")
    assert delivered["participants"] == [alice_name, bob_name]
    assert delivered["conversation_id"] == conversation
    assert "sender_deleted" not in delivered
    await carol.send_request("ack", ids=[first])
    reply = (await carol.call("send", to=delivered["participants"], body="yes!"))["ok"]
    assert reply["conversation_id"] == conversation
    for device in (bob, bob_phone):
        assert (await device.push_of("deliver"))["message_id"] == first
        assert (await device.push_of("deliver"))["body"] == "yes!"
    third = (await laptop.call("send", to=[bob_name, carol_name], body="see you"))["ok"]

    # list_conversations (6.11)
    listed = (await bob.call("list_conversations", limit=20))["ok"]
    assert listed["more"] is False
    [entry] = listed["conversations"]
    assert entry == {
        "conversation_id": conversation,
        "participants": [alice_name, carol_name],
        "unread": 3,
        "read_up_to": 0,
        "last_message": {
            "message_id": third["message_id"],
            "from": alice_name,
            "body": "see you",
            "sent_at": third["sent_at"],
        },
    }

    # read_history by names, then on by id with the cursor (6.12)
    page = (await bob.call("read_history", participants=[alice_name, carol_name], limit=2))["ok"]
    assert (page["conversation_id"], page["participants"]) == (
        conversation,
        [alice_name, carol_name],
    )
    assert [m["body"] for m in page["messages"]] == ["see you", "yes!"]
    assert page["more"] is True and page["read_up_to"] == 0
    cursor = page["messages"][-1]["message_id"]
    rest = await bob.call("read_history", conversation_id=conversation, before_id=cursor)
    assert [m["body"] for m in rest["ok"]["messages"]] == ["lunch at 12?"]
    assert rest["ok"]["more"] is False
    both = await bob.call("read_history", conversation_id=conversation, participants=["x"])
    assert both["error"]["code"] == "INVALID_ARGUMENT"

    # mark_read (6.13): the reply, and the read push on bob's other device (6.16)
    marked = await bob.call("mark_read", conversation_id=conversation, up_to_id=reply["message_id"])
    assert marked["ok"] == {
        "conversation_id": conversation,
        "up_to_id": reply["message_id"],
        "unread": 1,
    }
    assert await bob_phone.push_of("read") == {"push": "read", **marked["ok"]}
    unknown = await bob.call("mark_read", conversation_id=conversation + 10_000, up_to_id=1)
    assert unknown["error"]["code"] == "INVALID_ARGUMENT"

    # delete_messages (6.14): not the sender -> FORBIDDEN; the sender, for everyone -> every
    # connection of every participant gets the deleted push (6.17), the caller's after its reply.
    forbidden = await bob.call("delete_messages", ids=[first], for_everyone=True)
    assert forbidden["error"]["code"] == "FORBIDDEN"
    too_many = await bob.call("delete_messages", ids=list(range(1, 1026)))
    assert too_many["error"]["code"] == "LIMIT_EXCEEDED"
    assert await laptop.call("delete_messages", ids=[first], for_everyone=True) == {
        "id": laptop.next_id - 1,
        "ok": {},
    }
    assert all(p["push"] != "deleted" for p in laptop.pushes)  # (the reply came first)
    for device in (laptop, phone, bob, bob_phone, carol):
        assert await device.push_of("deleted") == {"push": "deleted", "ids": [first]}
    # for yourself only: gone from mine, not from theirs
    await carol.call("delete_messages", ids=[reply["message_id"]])
    assert await carol.push_of("deleted") == {"push": "deleted", "ids": [reply["message_id"]]}
    mine = (await carol.call("read_history", conversation_id=conversation))["ok"]["messages"]
    theirs = (await bob.call("read_history", conversation_id=conversation))["ok"]["messages"]
    assert [m["body"] for m in mine] == ["see you"]
    assert [m["body"] for m in theirs] == ["see you", "yes!"]
    for client in (laptop, phone, bob, bob_phone, carol):
        await client.ws.close()
