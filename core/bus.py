"""The Bus seam: how a committed event reaches the live sessions of a user, wherever they are.

One node (the default) needs nothing but a function call: :class:`LocalBus` hands every event
straight back to the service, which queues it on the user's sessions in this process, exactly
as before the seam existed. Several nodes on one PostgreSQL use a network bus
(``core.nats_bus.NatsBus``, imported only when asked for) that also publishes each event to the
user's subject, so the nodes holding that user's other sessions queue it too.

The service calls the bus and nothing else for pushes:
  * ``publish(account_id, event, skip, seq)`` for every delivery and notice, after the commit
    that made it true. ``seq`` is the recipient's sequence number for a delivery when the
    store keeps one (PostgreSQL: ``pending.seq``), 0 otherwise; a cluster's bus finds a
    notice's own seq in the store (``core.store.SeqStore.take_notice_seq``). ``skip`` is the
    session that caused a notice (it already knows).
  * ``end_sessions(account_id, reason)`` when every session of an account must end (Rule 14):
    the service ends this node's; the bus tells the others.
  * ``watch(account_id)`` before a login returns (the first session of that user on this
    node), ``unwatch(account_id)`` when the last one is gone: a network bus subscribes to the
    user's subject and learns where its sequence stands, so nothing committed after the
    session's backlog read can be missed.
The bus calls back into the service through :class:`BusSink`: ``deliver`` queues an event on
this node's sessions of the account, ``end_local_sessions`` ends them.

``local`` tells the service whether the bus reaches other processes. When it is False the
service publishes for every recipient, not only those with a session in this process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from core.store import SeqStore

if TYPE_CHECKING:
    from core.session import Session
    from core.types import CloseReason, Delivery, Notice


class BusSink(Protocol):
    """What a bus needs from the service of its node (``ChatService`` is one)."""

    def deliver(
        self, account_id: int, event: Delivery | Notice, skip: Session | None = None
    ) -> None:
        """Queue ``event`` on this node's live sessions of the account (not on ``skip``)."""

    def end_local_sessions(self, account_id: int, reason: CloseReason) -> None:
        """End this node's live sessions of the account."""


class Bus(Protocol):
    """Carries committed events to the nodes that hold the recipients' sessions."""

    #: True when every session is in this process (nothing crosses a process boundary).
    local: bool

    def attach(self, sink: BusSink) -> None:
        """Called once by the service it serves, before anything is published."""

    async def start(self) -> None:
        """Connect (a network bus); an unreachable bus fails here, at server start."""

    def publish(
        self,
        account_id: int,
        event: Delivery | Notice,
        skip: Session | None = None,
        seq: int = 0,
    ) -> None:
        """Deliver ``event`` to every live session of the account, on every node."""

    def end_sessions(self, account_id: int, reason: CloseReason) -> None:
        """Tell the other nodes to end their sessions of the account (this node's are
        ended by the service itself)."""

    async def watch(self, account_id: int) -> None:
        """This node now holds a session of the account: from the moment this returns,
        every event committed for it reaches this node."""

    def unwatch(self, account_id: int) -> None:
        """This node holds no session of the account any more."""

    async def close(self) -> None:
        """Stop (after the service has ended its sessions)."""


class LocalBus:
    """The single-node bus: a publish is a call into this process's service."""

    local = True

    def __init__(self) -> None:
        self._sink: BusSink | None = None

    def attach(self, sink: BusSink) -> None:
        self._sink = sink

    async def start(self) -> None:
        return None

    def publish(
        self,
        account_id: int,
        event: Delivery | Notice,
        skip: Session | None = None,
        seq: int = 0,
    ) -> None:
        # One process: events are published in commit order by the one event loop (SQLite
        # has one writer), so the sequence number adds nothing here.
        assert self._sink is not None, "the service attaches itself first"
        self._sink.deliver(account_id, event, skip)

    def end_sessions(self, account_id: int, reason: CloseReason) -> None:
        return None  # no other node

    async def watch(self, account_id: int) -> None:
        return None

    def unwatch(self, account_id: int) -> None:
        return None

    async def close(self) -> None:
        return None


def open_bus(url: str, store: object, *, node: str, sweep_interval: float | None = None) -> Bus:
    """The bus at ``url``: ``nats://host:port`` -> a NatsBus (it needs a ``SeqStore``, the
    PostgreSQL store, whose per-user sequences it repairs gaps with). ValueError in a
    person's words otherwise."""
    if not url.startswith(("nats://", "tls://")):
        raise ValueError(f"unknown bus {url!r}: give nats://host:port (a NATS server)")
    if not isinstance(store, SeqStore):
        raise ValueError(
            "a cluster bus needs the PostgreSQL store (--db postgresql://...): several nodes "
            "must share one database, and the bus repairs gaps from it"
        )
    from core.nats_bus import SWEEP_INTERVAL, NatsBus

    return NatsBus(
        url,
        store,
        node=node,
        sweep_interval=SWEEP_INTERVAL if sweep_interval is None else sweep_interval,
    )


__all__ = ["Bus", "BusSink", "LocalBus", "open_bus"]
