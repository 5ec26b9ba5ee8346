"""A node's death loses nothing (issue 11): kill -9 of a sender node, of a receiver node and
of nats-server, each under load. Every acknowledged message is delivered or pending; the
sessions that live on converge (every acknowledged message, once each, in order) within a
few sweep intervals; nothing is promised for a send that was not answered."""

from __future__ import annotations

from tests.cluster.conftest import Cluster
from tests.cluster.load import PW, Load, Reader
from tests.conformance.helpers import closed_within, receive


async def test_kill_9_of_a_sender_node_under_load(cluster: Cluster, names):
    bob = names("bob")
    for node in "ABC":
        cluster.node(node)
    readers = [
        await Reader.open(cluster.chat("B"), bob, signup=True),
        await Reader.open(cluster.chat("C", "websocket"), bob),
    ]
    senders = [names(f"s{i}") for i in range(4)]
    clients = [(n, await cluster.chat("A").user(n, PW)) for n in senders]
    load = Load([bob])
    load.start(clients)
    await load.until(100)
    cluster.nodes["A"].kill9()  # mid-send: some committed, some published, some neither
    await load.finish()
    assert load.failed == len(senders)  # every sender's next send found its node gone
    for reader in readers:
        await reader.wait_for(set(load.acked))
        reader.check_once_in_order()
    print(f"sender node killed: {len(load.acked)} acknowledged, all delivered to 2 sessions")


async def test_kill_9_of_a_receiver_node_under_load(cluster: Cluster, names):
    bob, carol = names("bob"), names("carol")
    for node in "ABC":
        cluster.node(node)
    bob_b = await Reader.open(cluster.chat("B"), bob, signup=True)
    bob_c = await Reader.open(cluster.chat("C"), bob)
    carol_b = await Reader.open(cluster.chat("B"), carol, signup=True)  # her only session
    senders = [names(f"s{i}") for i in range(3)]
    clients = [(n, await cluster.chat("A").user(n, PW)) for n in senders]
    load = Load([bob, carol])
    load.start(clients)
    await load.until(60)
    cluster.nodes["B"].kill9()
    await load.until(len(load.acked) + 60)  # the cluster goes on without B
    await load.stop()
    acked = set(load.acked)

    await bob_c.wait_for(acked)  # bob's session on C missed nothing
    bob_c.check_once_in_order()
    # carol: what her session on B got before it died, plus what is pending at her next
    # login (on another node), covers everything acknowledged; the backlog comes in order.
    relogin = await cluster.chat("C").client(auto_ack=False)
    pending = (await relogin.login(carol, PW)).pending
    backlog = await receive(relogin, pending, timeout=30) if pending else []
    ids = [m.message_id for m in backlog]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert acked <= carol_b.ids | set(ids)
    await bob_b.close()
    print(
        f"receiver node killed: {len(acked)} acknowledged; carol got {len(carol_b.ids)} "
        f"before, {pending} pending after"
    )


async def test_kill_9_of_nats_server_under_load(cluster: Cluster, names):
    bob = names("bob")
    for node in "ABC":
        cluster.node(node)
    readers = [
        await Reader.open(cluster.chat("B"), bob, signup=True),
        await Reader.open(cluster.chat("C"), bob),
        await Reader.open(cluster.chat("A"), bob),  # the senders' own node
    ]
    senders = [names(f"s{i}") for i in range(4)]
    clients = [(n, await cluster.chat("AB"[i % 2]).user(n, PW)) for i, n in enumerate(senders)]
    load = Load([bob])
    load.start(clients, limit=150)
    await load.until(60)
    cluster.nats.kill9()  # the bus is gone: the nodes go on sending and sweeping
    during = len(load.acked)
    await load.until(during + 60)
    cluster.nats.start()  # back on the same port: the nodes reconnect and resync
    await load.stop()
    assert load.failed == 0  # a bus outage fails no send
    for reader in readers:
        await reader.wait_for(set(load.acked))
        reader.check_once_in_order()
    print(f"nats-server killed: {len(load.acked)} acknowledged, all delivered to 3 sessions")


async def test_a_node_that_lost_the_bus_ends_a_deleted_accounts_sessions_by_sweeping(
    cluster: Cluster, names
):
    bob = names("bob")
    for node in "AB":
        cluster.node(node)
    deleting = await cluster.chat("A").user(bob, PW)
    other = await cluster.chat("B").login(bob, PW)
    cluster.nats.kill9()  # the "end every session" event cannot travel
    await deleting.delete_account(bob, PW)
    assert await closed_within(other, timeout=30)  # the sweep saw the account go
    cluster.nats.start()
