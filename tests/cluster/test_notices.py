"""Notices lost on the bus still arrive (issue 11): read marks and deleted ids (Rules 22, 23)
and "end every session" after a password change are logged in the user's sequence, so a node
that never heard them (nats-server killed: every publish is lost) hands them on from
PostgreSQL at its next sweep, in order with the user's deliveries."""

from __future__ import annotations

from core.types import Delivery, MessagesDeleted, ReadMarker
from tests.cluster.conftest import CONVERGE, Cluster
from tests.conformance.helpers import WAIT, closed_within, receive

PW = "cluster-pw-7781"


async def test_read_marks_and_deletions_lost_on_the_bus_arrive_in_order(cluster: Cluster, names):
    alice, bob = names("alice"), names("bob")
    for node in "AB":
        cluster.node(node)
    sender = await cluster.chat("A").user(alice, PW)
    bob_a = await cluster.chat("A").user(bob, PW)
    bob_b = await cluster.chat("B").login(bob, PW)
    first = await sender.send([bob], "before the outage")
    for session in (bob_a, bob_b):
        assert [m.body for m in await receive(session)] == ["before the outage"]

    cluster.nats.kill9()  # from now on every publish is lost: only the sweep carries events
    second = await sender.send([bob], "during the outage")  # (node A: bob_a hears it at once)
    assert [m.body for m in await receive(bob_a)] == ["during the outage"]
    marked = await bob_a.mark_read(second.conversation_id, second.message_id)
    await bob_a.delete_messages([first.message_id])  # from bob's history only
    assert await bob_a.next_event(WAIT) == MessagesDeleted((first.message_id,))

    # Node B never heard any of it: its sweep reads the delivery and both notices from
    # PostgreSQL and hands them on in the order they were committed.
    events = [await bob_b.next_event(CONVERGE) for _ in range(3)]
    assert isinstance(events[0], Delivery) and events[0].message_id == second.message_id
    assert events[1] == ReadMarker(second.conversation_id, second.message_id, 0) == marked
    assert events[2] == MessagesDeleted((first.message_id,))
    cluster.nats.start()


async def test_a_password_change_lost_on_the_bus_ends_the_other_nodes_sessions(
    cluster: Cluster, names
):
    bob = names("bob")
    for node in "AB":
        cluster.node(node)
    changing = await cluster.chat("A").user(bob, PW)
    same_node = await cluster.chat("A").login(bob, PW)
    elsewhere = await cluster.chat("B").login(bob, PW)
    cluster.nats.kill9()  # the "end every session" publish is lost
    await changing.change_password(PW, PW + "-new", end_other_sessions=True)
    assert await closed_within(same_node)  # (this node's service ends its own at once)
    assert await closed_within(elsewhere, timeout=CONVERGE)  # B's sweep read it back
    # The session that changed it stays, and a login with the new password on B after the
    # change is not ended by it.
    assert changing.logged_in
    await changing.list_accounts(bob)
    after = await cluster.chat("B").login(bob, PW + "-new")
    await changing.send([bob], "still here")
    assert [m.body for m in await receive(after, timeout=CONVERGE)] == ["still here"]
    assert changing.logged_in and after.logged_in
    cluster.nats.start()
