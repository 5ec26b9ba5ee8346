"""History over gRPC from chat.proto alone: clients written from its comments, with nothing but
the generated stubs and grpc (not our client classes, not our constants), exercise every new
operation (Rules 19-25) against a real server process, on `Chat` (unary rpcs and the
SubscribeEvents stream) and on `ChatStream` (one bidirectional stream, `notices` asked for)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._generated import chat_pb2_grpc
from wirechat.launch import ServerProcess

WAIT = 10.0


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    proc = ServerProcess(
        ["grpc", "grpc-stream"], tmp_path_factory.mktemp("history") / "db.sqlite"
    ).start()
    try:
        yield {name: f"{host}:{port}" for name, (host, port) in proc.addresses.items()}
    finally:
        proc.stop()


def fresh(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]


def session(token: str) -> tuple[tuple[str, str], ...]:
    return (("wirechat-session", token),)  # the key documented in chat.proto


async def next_event(stream: Any) -> tuple[str, Any]:
    event = await stream.read()
    assert event is not grpc.aio.EOF
    arm = event.WhichOneof("event")
    return arm, getattr(event, arm)


async def test_every_history_rpc_on_chat(targets: dict[str, str]) -> None:
    alice, bob, carol = fresh("a"), fresh("b"), fresh("c")
    async with grpc.aio.insecure_channel(targets["grpc"]) as channel, asyncio.timeout(WAIT):
        stub = chat_pb2_grpc.ChatStub(channel)
        tokens = {}
        for user in (alice, bob, carol):
            reply = await stub.Signup(pb.SignupRequest(username=user, password="pw-secret-1"))
            tokens[user] = session(reply.session_token)
        laptop = session((await stub.Login(pb.LoginRequest(username=alice, password="pw-secret-1")))
                         .session_token)  # fmt: skip
        bob_events = stub.SubscribeEvents(pb.SubscribeRequest(), metadata=tokens[bob])
        laptop_events = stub.SubscribeEvents(pb.SubscribeRequest(), metadata=laptop)
        await bob_events.wait_for_connection()
        await laptop_events.wait_for_connection()

        # A group message: bob sees the other participants and the conversation; alice's
        # laptop gets the "sent by you" copy.
        sent = await stub.Send(
            pb.SendRequest(recipients=[bob, carol], body="hi both"), metadata=tokens[alice]
        )
        assert sent.conversation_id != 0
        arm, got = await next_event(bob_events)
        assert arm == "delivery"
        assert (got.message_id, got.sender, got.body) == (sent.message_id, alice, "hi both")
        assert list(got.participants) == sorted([alice, carol])
        assert (got.conversation_id, got.sender_deleted) == (sent.conversation_id, False)
        arm, copy = await next_event(laptop_events)
        assert arm == "sent_copy"
        assert (copy.message_id, copy.sender, list(copy.participants)) == (
            sent.message_id, alice, sorted([bob, carol]),
        )  # fmt: skip
        await stub.Ack(pb.AckRequest(message_ids=[got.message_id]), metadata=tokens[bob])
        second = await stub.Send(
            pb.SendRequest(recipients=[bob, carol], body="second"), metadata=tokens[alice]
        )
        assert (await next_event(bob_events))[0] == "delivery"
        assert (await next_event(laptop_events))[0] == "sent_copy"

        # Conversations and history, paged.
        listed = await stub.ListConversations(pb.ListConversationsRequest(), metadata=tokens[bob])
        [conversation] = listed.conversations
        assert (conversation.conversation_id, list(conversation.participants)) == (
            sent.conversation_id, sorted([alice, carol]),
        )  # fmt: skip
        assert (conversation.unread, conversation.read_up_to, listed.more) == (2, 0, False)
        assert conversation.last_message.body == "second"
        page = await stub.ReadHistory(
            pb.ReadHistoryRequest(participants=[alice, carol], limit=1), metadata=tokens[bob]
        )
        assert (page.conversation_id, list(page.participants), page.more) == (
            sent.conversation_id, sorted([alice, carol]), True,
        )  # fmt: skip
        assert [m.body for m in page.messages] == ["second"]
        assert page.messages[0].conversation_id == 0  # left out: the page's (chat.proto)
        older = await stub.ReadHistory(
            pb.ReadHistoryRequest(
                conversation_id=page.conversation_id, before_id=page.messages[-1].message_id
            ),
            metadata=tokens[bob],
        )
        assert [m.body for m in older.messages] == ["hi both"] and not older.more

        # Read state: the reply, then a notice on the user's other session.
        bob_phone = session(
            (await stub.Login(pb.LoginRequest(username=bob, password="pw-secret-1"))).session_token
        )
        phone_events = stub.SubscribeEvents(pb.SubscribeRequest(), metadata=bob_phone)
        await phone_events.wait_for_connection()
        assert (await next_event(phone_events))[1].body == "second"  # still pending
        marked = await stub.MarkRead(
            pb.MarkReadRequest(conversation_id=sent.conversation_id, up_to_id=sent.message_id),
            metadata=tokens[bob],
        )
        assert (marked.conversation_id, marked.up_to_id, marked.unread) == (
            sent.conversation_id, sent.message_id, 1,
        )  # fmt: skip
        arm, notice = await next_event(phone_events)
        assert arm == "read_marker" and notice == marked

        # Deletion: only the sender may delete for everyone; everyone affected is told.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.DeleteMessages(
                pb.DeleteMessagesRequest(message_ids=[sent.message_id], for_everyone=True),
                metadata=tokens[bob],
            )
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert ("wirechat-error", "FORBIDDEN") in tuple(refused.value.trailing_metadata())
        await stub.DeleteMessages(
            pb.DeleteMessagesRequest(message_ids=[sent.message_id], for_everyone=True),
            metadata=tokens[alice],
        )
        for stream in (bob_events, phone_events, laptop_events):
            arm, gone = await next_event(stream)
            assert arm == "gone" and list(gone.message_ids) == [sent.message_id]
        left = await stub.ReadHistory(
            pb.ReadHistoryRequest(conversation_id=sent.conversation_id), metadata=tokens[carol]
        )
        assert [m.body for m in left.messages] == ["second"]

        # Deleting for oneself touches no one else's history.
        await stub.DeleteMessages(
            pb.DeleteMessagesRequest(message_ids=[second.message_id]), metadata=tokens[carol]
        )
        mine = await stub.ReadHistory(
            pb.ReadHistoryRequest(conversation_id=sent.conversation_id), metadata=tokens[carol]
        )
        theirs = await stub.ReadHistory(
            pb.ReadHistoryRequest(conversation_id=sent.conversation_id), metadata=tokens[bob]
        )
        assert (len(mine.messages), len(theirs.messages)) == (0, 1)
        for stream in (bob_events, laptop_events, phone_events):
            stream.cancel()


async def test_history_rpcs_name_their_errors(targets: dict[str, str]) -> None:
    me = fresh("e")
    async with grpc.aio.insecure_channel(targets["grpc"]) as channel, asyncio.timeout(WAIT):
        stub = chat_pb2_grpc.ChatStub(channel)
        token = session(
            (await stub.Signup(pb.SignupRequest(username=me, password="pw-secret-1"))).session_token
        )
        cases: list[tuple[Any, Any, tuple[tuple[str, str], ...], grpc.StatusCode, str]] = [
            (stub.ListConversations, pb.ListConversationsRequest(), (), grpc.StatusCode.UNAUTHENTICATED, "NOT_LOGGED_IN"),  # noqa: E501
            (stub.MarkRead, pb.MarkReadRequest(conversation_id=12345, up_to_id=1), token, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),  # noqa: E501
            (stub.ReadHistory, pb.ReadHistoryRequest(participants=["x"], conversation_id=1), token, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),  # noqa: E501
            (stub.DeleteMessages, pb.DeleteMessagesRequest(message_ids=range(1, 1026)), token, grpc.StatusCode.INVALID_ARGUMENT, "LIMIT_EXCEEDED"),  # noqa: E501
        ]  # fmt: skip
        for rpc, request, metadata, code, reason in cases:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await rpc(request, metadata=metadata)
            assert caught.value.code() is code, request
            assert ("wirechat-error", reason) in tuple(caught.value.trailing_metadata())
        # Nothing yet is an empty page, not an error.
        empty = await stub.ReadHistory(
            pb.ReadHistoryRequest(participants=["nobody"]), metadata=token
        )
        assert (empty.conversation_id, list(empty.messages), empty.more) == (0, [], False)


async def test_every_history_request_on_chat_stream(targets: dict[str, str]) -> None:
    alice, bob = fresh("a"), fresh("b")
    connect = "/wirechat.v1.ChatStream/Connect"
    async with grpc.aio.insecure_channel(targets["grpc-stream"]) as channel, asyncio.timeout(WAIT):

        def open_stream() -> Any:
            return channel.stream_stream(
                connect,
                request_serializer=pb.ClientMessage.SerializeToString,
                response_deserializer=pb.ServerMessage.FromString,
            )()

        async def ask(call: Any, **request: Any) -> pb.ServerMessage:
            """Send one request (id 1) and return its reply; pushes on the way are kept."""
            await call.write(pb.ClientMessage(request_id=1, **request))
            while True:
                message = await call.read()
                if message.request_id == 1:
                    return message
                pushes[call].append(message)

        a, b, a2 = open_stream(), open_stream(), open_stream()
        pushes: dict[Any, list[pb.ServerMessage]] = {a: [], b: [], a2: []}
        await ask(a, signup=pb.SignupRequest(username=alice, password="pw-secret-1", notices=True))
        await ask(b, signup=pb.SignupRequest(username=bob, password="pw-secret-1", notices=True))
        await ask(a2, login=pb.LoginRequest(username=alice, password="pw-secret-1", notices=True))

        sent = (await ask(a, send=pb.SendRequest(recipients=[bob], body="hello"))).sent
        push = await b.read()
        assert push.WhichOneof("message") == "delivery" and push.request_id == 0
        assert (push.delivery.body, list(push.delivery.participants)) == ("hello", [alice])
        assert push.delivery.conversation_id == sent.conversation_id
        copy = await a2.read()
        assert copy.WhichOneof("message") == "sent_copy" and copy.sent_copy.body == "hello"

        listed = (await ask(b, list_conversations=pb.ListConversationsRequest())).conversations
        assert [c.conversation_id for c in listed.conversations] == [sent.conversation_id]
        history = (await ask(b, read_history=pb.ReadHistoryRequest(participants=[alice]))).history
        assert [m.body for m in history.messages] == ["hello"]

        marked = await ask(
            a,
            mark_read=pb.MarkReadRequest(conversation_id=sent.conversation_id, up_to_id=2**64 - 1),
        )
        assert marked.WhichOneof("message") == "marked_read"
        assert marked.marked_read.up_to_id == sent.message_id  # never past the last message
        notice = await a2.read()
        assert notice.WhichOneof("message") == "read_marker"
        assert notice.read_marker == marked.marked_read

        refused = await ask(
            b, delete_messages=pb.DeleteMessagesRequest(message_ids=[sent.message_id],
                                                        for_everyone=True)
        )  # fmt: skip
        assert refused.WhichOneof("message") == "error"
        assert refused.error.reason == pb.FORBIDDEN
        done = await ask(
            a,
            delete_messages=pb.DeleteMessagesRequest(
                message_ids=[sent.message_id], for_everyone=True
            ),
        )
        assert done.WhichOneof("message") == "messages_deleted"
        for call in (a, b, a2):
            gone = pushes[call].pop() if pushes[call] else await call.read()
            assert gone.WhichOneof("message") == "gone", call
            assert list(gone.gone.message_ids) == [sent.message_id]
        for call in (a, b, a2):
            await call.done_writing()
            assert await call.read() is grpc.aio.EOF
