"""A client built from chat.proto as it was before history (issue 9) keeps working unchanged.

``V1_PROTO`` is that contract, comments stripped: the messages and rpcs exactly as shipped
(`Chat` from the last release, `ChatStream` as it was introduced). The test compiles it with
protoc into a private descriptor pool, so its message classes are the *old generated code*
(no participants, no notices, no new rpcs), and talks to today's server with them alone:
  * the new contract only adds to the old one (same numbers, types and rpcs);
  * a v1 Subscribe stream still gets plain Deliveries, and none of the notices of Rules 22-24,
    even while the user's other, newer clients send, read and delete;
  * a v1 ChatStream login (no `notices`) gets deliveries only, each in a push arm it knows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.unknown_fields import UnknownFieldSet
from grpc_tools import protoc

from transports.grpc._generated import chat_pb2
from transports.grpc.client import open_client
from wirechat.launch import ServerProcess

WAIT = 10.0

V1_PROTO = """
syntax = "proto3";
package wirechat.v1;
service Chat {
  rpc Signup(SignupRequest) returns (LoginReply);
  rpc Login(LoginRequest) returns (LoginReply);
  rpc Logout(LogoutRequest) returns (LogoutReply);
  rpc ListAccounts(ListAccountsRequest) returns (ListAccountsReply);
  rpc Send(SendRequest) returns (SendReply);
  rpc Ack(AckRequest) returns (AckReply);
  rpc DeleteAccount(DeleteAccountRequest) returns (DeleteAccountReply);
  rpc Subscribe(SubscribeRequest) returns (stream Delivery);
}
service ChatStream {
  rpc Connect(stream ClientMessage) returns (stream ServerMessage);
}
message SignupRequest { string username = 1; string password = 2; }
message LoginRequest { string username = 1; string password = 2; }
message LoginReply { string session_token = 1; string username = 2; uint64 pending = 3; }
message LogoutRequest {}
message LogoutReply {}
message ListAccountsRequest { string pattern = 1; string after = 2; uint32 limit = 3; }
message ListAccountsReply { repeated string usernames = 1; bool more = 2; }
message SendRequest { repeated string recipients = 1; string body = 2; }
message SendReply {
  uint64 message_id = 1; uint64 sent_at_ms = 2; repeated string unknown_recipients = 3;
}
message AckRequest { repeated uint64 message_ids = 1; }
message AckReply {}
message DeleteAccountRequest { string username = 1; }
message DeleteAccountReply {}
message SubscribeRequest {}
message Delivery {
  uint64 message_id = 1; uint64 sent_at_ms = 2; string sender = 3; string body = 4;
}
enum ErrorReason {
  ERROR_REASON_UNSPECIFIED = 0; USERNAME_TAKEN = 1; AUTH_FAILED = 2; NOT_LOGGED_IN = 3;
  ALREADY_LOGGED_IN = 4; FORBIDDEN = 5; INVALID_ARGUMENT = 6; LIMIT_EXCEEDED = 7;
  ALREADY_SUBSCRIBED = 8; UNKNOWN_SESSION = 9; LOGIN_FAILED = 10; ACCOUNT_DELETED = 11;
  SLOW_CONSUMER = 12; SHUTDOWN = 13; DISCONNECTED = 14;
}
message ClientMessage {
  uint32 request_id = 1;
  oneof request {
    SignupRequest signup = 2; LoginRequest login = 3; LogoutRequest logout = 4;
    ListAccountsRequest list_accounts = 5; SendRequest send = 6; AckRequest ack = 7;
    DeleteAccountRequest delete_account = 8;
  }
}
message ServerMessage {
  uint32 request_id = 1;
  oneof message {
    LoginReply logged_in = 2; LogoutReply logged_out = 3; ListAccountsReply accounts = 4;
    SendReply sent = 5; DeleteAccountReply deleted = 6; StreamError error = 7;
    Delivery delivery = 8;
  }
}
message StreamError { ErrorReason reason = 1; string message = 2; }
"""


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The v1 contract's message classes (and its file descriptor), from protoc."""
    folder = tmp_path_factory.mktemp("v1")
    (folder / "chat_v1.proto").write_text(V1_PROTO)
    out = folder / "v1.desc"
    assert (
        protoc.main(["protoc", f"-I{folder}", f"--descriptor_set_out={out}", "chat_v1.proto"]) == 0
    )
    [file] = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    pool = descriptor_pool.DescriptorPool()  # private: no clash with today's wirechat.v1
    pool.Add(file)
    classes = {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"wirechat.v1.{name}"))
        for name in (m.name for m in file.message_type)
    }
    return SimpleNamespace(file=file, **classes)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, int]]]:
    proc = ServerProcess(["grpc", "grpc-stream"], tmp_path_factory.mktemp("v1s") / "db").start()
    try:
        yield proc.addresses
    finally:
        proc.stop()


def test_today_only_adds_to_the_v1_contract(v1: SimpleNamespace) -> None:
    now = descriptor_pb2.FileDescriptorProto()
    chat_pb2.DESCRIPTOR.CopyToProto(now)
    messages = {m.name: m for m in now.message_type}
    for old in v1.file.message_type:
        fields = {f.number: f for f in messages[old.name].field}
        for field in old.field:
            new = fields[field.number]
            assert (new.name, new.type, new.label, new.type_name) == (
                field.name, field.type, field.label, field.type_name,
            ), f"{old.name}.{field.name}"  # fmt: skip
    services = {s.name: {m.name: m for m in s.method} for s in now.service}
    for service in v1.file.service:
        for method in service.method:
            new = services[service.name][method.name]
            assert (new.input_type, new.output_type, new.server_streaming) == (
                method.input_type, method.output_type, method.server_streaming,
            )  # fmt: skip
    [reasons] = [e for e in now.enum_type if e.name == "ErrorReason"]
    [old_reasons] = v1.file.enum_type
    assert {(v.name, v.number) for v in old_reasons.value} <= {
        (v.name, v.number) for v in reasons.value
    }


def _unary(channel: grpc.aio.Channel, v1: SimpleNamespace, rpc: str, reply: str) -> Any:
    return channel.unary_unary(
        f"/wirechat.v1.Chat/{rpc}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=getattr(v1, reply).FromString,
    )


async def test_a_v1_subscriber_gets_plain_deliveries_and_no_notices(
    v1: SimpleNamespace, target: dict[str, tuple[str, int]]
) -> None:
    host, port = target["grpc"]
    bob, alice = "b" + uuid.uuid4().hex[:10], "a" + uuid.uuid4().hex[:10]
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel, asyncio.timeout(WAIT):
        signup = _unary(channel, v1, "Signup", "LoginReply")
        reply = await signup(v1.SignupRequest(username=bob, password="pw-secret-1"))
        as_bob = (("wirechat-session", reply.session_token),)
        subscribe = channel.unary_stream(
            "/wirechat.v1.Chat/Subscribe",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=v1.Delivery.FromString,
        )
        stream = subscribe(v1.SubscribeRequest(), metadata=as_bob)
        await stream.wait_for_connection()

        # Today's clients around bob: alice on two devices, bob on a second, newer one.
        async with open_client(target["grpc"]) as laptop, open_client(target["grpc"]) as phone:
            await laptop.signup(alice, "pw-secret-1")
            await phone.login(bob, "pw-secret-1")
            first = await laptop.send([bob], "one")
            await laptop.send([bob], "two")
            await phone.mark_read(first.conversation_id, first.message_id)  # a read_marker
            await laptop.delete_messages([first.message_id], for_everyone=True)  # a `gone`
            last = await laptop.send([bob, alice], "three")  # a group: participants, a copy

        got = [await stream.read() for _ in range(3)]
        assert [(d.sender, d.body) for d in got] == [
            (alice, "one"),
            (alice, "two"),
            (alice, "three"),
        ]
        assert got[-1].message_id == last.message_id
        ack = _unary(channel, v1, "Ack", "AckReply")
        await ack(v1.AckRequest(message_ids=[d.message_id for d in got]), metadata=as_bob)
        # Nothing else is on the stream: the next item is the next message.
        send = _unary(channel, v1, "Send", "SendReply")
        await send(v1.SendRequest(recipients=[bob], body="to myself"), metadata=as_bob)
        assert (await stream.read()).body == "to myself"
        await _unary(channel, v1, "Logout", "LogoutReply")(v1.LogoutRequest(), metadata=as_bob)
        assert await stream.read() is grpc.aio.EOF


async def test_a_v1_chat_stream_login_gets_deliveries_only(
    v1: SimpleNamespace, target: dict[str, tuple[str, int]]
) -> None:
    host, port = target["grpc-stream"]
    bob, alice = "b" + uuid.uuid4().hex[:10], "a" + uuid.uuid4().hex[:10]
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel, asyncio.timeout(WAIT):
        call = channel.stream_stream(
            "/wirechat.v1.ChatStream/Connect",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=v1.ServerMessage.FromString,
        )()
        signup = v1.SignupRequest(username=bob, password="pw-secret-1")
        await call.write(v1.ClientMessage(request_id=1, signup=signup))
        assert (await call.read()).WhichOneof("message") == "logged_in"
        async with open_client(target["grpc"]) as laptop, open_client(target["grpc"]) as phone:
            await laptop.signup(alice, "pw-secret-1")
            await phone.login(bob, "pw-secret-1")
            first = await laptop.send([bob], "one")
            await phone.mark_read(first.conversation_id, first.message_id)
            await laptop.delete_messages([first.message_id], for_everyone=True)
            await laptop.send([bob], "two")
        await call.write(
            v1.ClientMessage(request_id=2, send=v1.SendRequest(recipients=[bob], body="me"))
        )
        seen = []
        while len(seen) < 4:
            message = await call.read()
            seen.append((message.WhichOneof("message"), message.request_id))
        # Three deliveries and the reply to the send, in some order; no arm it cannot parse.
        assert sorted(seen) == [("delivery", 0)] * 3 + [("sent", 2)]
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF


async def test_a_v1_client_logs_in_as_before_and_cannot_delete_without_a_password(
    v1: SimpleNamespace, target: dict[str, tuple[str, int]]
) -> None:
    """Issue 13 from an old client's side: LoginReply.resume_token is a field it skips, and
    its DeleteAccount (no password field) is refused with AUTH_FAILED and a sentence saying
    to update the client; the account stays, the session stays logged in. The same on
    ChatStream."""
    host, port = target["grpc"]
    me = "o" + uuid.uuid4().hex[:10]
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel, asyncio.timeout(WAIT):
        signup = _unary(channel, v1, "Signup", "LoginReply")
        reply = await signup(v1.SignupRequest(username=me, password="pw-secret-1"))
        assert (reply.username, reply.pending) == (me, 0)
        # The resume token is a field it does not know: kept aside, never in its way.
        assert [f.field_number for f in UnknownFieldSet(reply)] == [4]  # type: ignore[attr-defined]
        as_me = (("wirechat-session", reply.session_token),)
        delete = _unary(channel, v1, "DeleteAccount", "DeleteAccountReply")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await delete(v1.DeleteAccountRequest(username=me), metadata=as_me)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert dict(caught.value.trailing_metadata())["wirechat-error"] == "AUTH_FAILED"
        assert caught.value.details() == (
            "deleting an account now needs your password; update your client"
        )
        listed = _unary(channel, v1, "ListAccounts", "ListAccountsReply")
        page = await listed(v1.ListAccountsRequest(pattern=me), metadata=as_me)
        assert list(page.usernames) == [me]  # still there, and still logged in

    host, port = target["grpc-stream"]
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel, asyncio.timeout(WAIT):
        call = channel.stream_stream(
            "/wirechat.v1.ChatStream/Connect",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=v1.ServerMessage.FromString,
        )()
        login = v1.LoginRequest(username=me, password="pw-secret-1")
        await call.write(v1.ClientMessage(request_id=1, login=login))
        assert (await call.read()).logged_in.username == me
        delete_request = v1.DeleteAccountRequest(username=me)
        await call.write(v1.ClientMessage(request_id=2, delete_account=delete_request))
        answer = await call.read()
        assert answer.WhichOneof("message") == "error" and answer.request_id == 2
        assert (
            answer.error.reason
            == v1.ServerMessage.DESCRIPTOR.file.enum_types_by_name["ErrorReason"]
            .values_by_name["AUTH_FAILED"]
            .number
        )
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
