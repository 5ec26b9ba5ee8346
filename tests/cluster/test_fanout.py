"""Every Rule across nodes (issue 11): pushes reach a user's sessions on any node once and in
order, acks and pending work from any node, deletion ends every session cluster-wide."""

from __future__ import annotations

import asyncio

from core import ChatClient, Delivery
from tests.cluster.conftest import Cluster
from tests.conformance.helpers import WAIT, closed_within, receive

PW = "cluster-pw-7781"


async def pending_becomes(cluster: Cluster, node: str, name: str, expected: int) -> ChatClient:
    """A fresh session of ``name`` on ``node`` that logged in with ``expected`` pending.
    Acks are fire-and-forget and commit on their own node a moment later, so a login on
    another node is retried (bounded) until it sees them."""
    for _ in range(50):
        probe = await cluster.chat(node).client(auto_ack=False)
        if (await probe.login(name, PW)).pending == expected:
            return probe
        await probe.close()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never had {expected} pending on node {node}")


async def received_exactly(client: ChatClient, bodies: list[str]) -> list[Delivery]:
    """The next messages are exactly ``bodies`` (in that order), and nothing came twice:
    a marker sent after them (by the caller) must be the very next one."""
    got = await receive(client, len(bodies), timeout=WAIT * 2)
    assert [m.body for m in got] == bodies
    return got


async def test_a_send_on_one_node_reaches_sessions_on_two_others_once(cluster: Cluster, names):
    alice, bob = names("alice"), names("bob")
    for node in "ABC":
        cluster.node(node)
    sender = await cluster.chat("A").user(alice, PW)
    on_b = await cluster.chat("B").user(bob, PW)
    on_c = await cluster.chat("C", "websocket").login(bob, PW)  # another transport too

    bodies = [f"hello {i}" for i in range(20)]
    ids = [(await sender.send([bob], body)).message_id for body in bodies]
    for session in (on_b, on_c):
        got = await received_exactly(session, bodies)
        assert [m.message_id for m in got] == ids
        assert all(m.sender == alice and m.participants == (alice,) for m in got)
    await sender.send([bob], "marker")
    for session in (on_b, on_c):  # the next one is the marker: nothing came twice
        assert (await receive(session))[0].body == "marker"

    # Both sessions acked (auto-ack) on their nodes: a login on a third node has nothing.
    await pending_becomes(cluster, "A", bob, 0)


async def test_an_ack_on_any_node_is_final_and_unacked_stays_pending_everywhere(
    cluster: Cluster, names
):
    alice, bob = names("alice"), names("bob")
    for node in "ABC":
        cluster.node(node)
    sender = await cluster.chat("A").user(alice, PW)
    quiet = await cluster.chat("B").user(bob, PW, auto_ack=False)
    sent = [await sender.send([bob], f"m{i}") for i in range(6)]
    got = await receive(quiet, 6)
    assert [m.message_id for m in got] == [s.message_id for s in sent]
    await quiet.ack([s.message_id for s in sent[:4]])  # acked on B

    # Pending on C is what B did not ack, oldest first (Rule 12), whatever node asks.
    probe = await pending_becomes(cluster, "C", bob, 2)
    assert [m.body for m in await receive(probe, 2)] == ["m4", "m5"]


async def test_order_holds_under_concurrent_senders_on_every_node(cluster: Cluster, names):
    bob = names("bob")
    senders = [names(f"s{i}") for i in range(6)]
    for node in "ABC":
        cluster.node(node)
    readers = [
        await cluster.chat("A").user(bob, PW),
        await cluster.chat("B").login(bob, PW),
        await cluster.chat("C", "websocket").login(bob, PW),
    ]
    clients = [await cluster.chat("ABC"[i % 3]).user(name, PW) for i, name in enumerate(senders)]
    per_sender = 40

    async def send_all(client: ChatClient, who: str) -> None:
        for i in range(per_sender):
            await client.send([bob], f"{who} {i}")

    await asyncio.gather(*(send_all(c, n) for c, n in zip(clients, senders, strict=True)))
    total = per_sender * len(senders)
    for reader in readers:
        got = await receive(reader, total, timeout=WAIT * 4)
        ids = [m.message_id for m in got]
        assert len(set(ids)) == total  # every message once
        assert ids == sorted(ids)  # one recipient's messages come in commit (id) order
        for who in senders:  # Rule 13, per pair
            mine = [m.body for m in got if m.sender == who]
            assert mine == [f"{who} {i}" for i in range(per_sender)]


async def test_deleting_an_account_ends_its_sessions_on_every_node(cluster: Cluster, names):
    bob = names("bob")
    for node in "ABC":
        cluster.node(node)
    deleting = await cluster.chat("A").user(bob, PW)
    others = [await cluster.chat("B").login(bob, PW), await cluster.chat("C").login(bob, PW)]
    await deleting.delete_account(bob, PW)
    for session in others:
        assert await closed_within(session)


async def test_read_marks_and_sent_copies_reach_the_users_other_nodes(cluster: Cluster, names):
    alice, bob = names("alice"), names("bob")
    for node in "AB":
        cluster.node(node)
    alice_a = await cluster.chat("A").user(alice, PW)
    alice_b = await cluster.chat("B").login(alice, PW)
    bob_b = await cluster.chat("B").user(bob, PW)
    sent = await alice_a.send([bob], "hi bob")
    copy = await alice_b.next_event(WAIT)  # Rule 24 from another node
    assert getattr(copy, "message", None) is not None
    assert copy.message.message_id == sent.message_id  # type: ignore[union-attr]
    await receive(bob_b)
    bob_a = await pending_becomes(cluster, "A", bob, 0)
    await bob_b.mark_read(sent.conversation_id, sent.message_id)
    marker = await bob_a.next_event(WAIT)  # Rule 22 from another node
    assert getattr(marker, "up_to_id", None) == sent.message_id


async def test_a_password_change_ends_the_users_other_sessions_on_every_node(
    cluster: Cluster, names
):
    bob = names("bob")
    for node in "AB":
        cluster.node(node)
    changing = await cluster.chat("A").user(bob, PW)
    elsewhere = await cluster.chat("B").login(bob, PW)
    await changing.change_password(PW, PW + "-new", end_other_sessions=True)
    assert await closed_within(elsewhere)
    assert changing.logged_in  # the session that changed it stays


async def test_a_message_to_many_goes_out_once_and_reaches_each_recipient_once(
    cluster: Cluster, names
):
    alice = names("alice")
    people = [names(f"p{i}") for i in range(4)]
    for node in "ABC":
        cluster.node(node)
    sender = await cluster.chat("A").user(alice, PW)
    sessions = {p: await cluster.chat("BC"[i % 2]).user(p, PW) for i, p in enumerate(people)}
    bodies = [f"to all {i}" for i in range(10)]
    for body in bodies:
        await sender.send(people, body)
    await sender.send(people, "marker")
    for person, session in sessions.items():
        got = await received_exactly(session, [*bodies, "marker"])  # once each, in order
        others = tuple(sorted({alice, *people} - {person}))
        assert all(m.participants == others and m.sender == alice for m in got)
    cluster.nodes["A"].stop()
    for _ in range(50):  # (its log is read by a thread: the last line may still come)
        closed = [line for line in cluster.nodes["A"].log_lines if "bus: closed" in line]
        if closed:
            break
        await asyncio.sleep(0.1)
    assert closed and "groups=11," in closed[-1]  # one publish per message, not four
