"""One write path for the asyncio drivers of the TCP transports (server and client sides).

Theory of operation
  * Frames are not written one by one. They are collected in a list and handed to the
    transport in one ``write``/``writelines``, which costs one system call:
      - at the end of a *burst*: a driver brackets the handling of what one ``data_received``
        brought (``begin_burst``/``end_burst``), so the replies to a pipelined batch of
        requests leave together;
      - otherwise at the end of the current loop iteration (``call_soon``), so the frames that
        callbacks and tasks produce in one iteration (a backlog of deliveries, a batch of
        pipelined requests, ACKs) share one system call too;
      - or at once, when ``flush_at`` bytes are waiting, so a burst of large frames cannot
        pile up in our list.
    ``write_now`` skips the batching when nothing is waiting: a lone request costs one system
    call and no trip around the loop.
  * The byte budget: the bytes waiting in our list plus the transport's write buffer. The
    transport is told to pause us (``pause_writing``) once its buffer passes ``budget``, and our
    list is flushed before anyone waits, so "paused" means the budget is spent. Then writers
    ``await writable()`` until the peer has read enough (``resume_writing``).
  * A writer that waits with a ``stall_timeout`` gives up when no byte has left the budget for
    that long, or as soon as the ``give_up`` it passed says so: ``writable()`` returns False
    and the caller decides what that means (the server: a slow consumer).
  * ``release()`` (the connection is gone) wakes every waiting writer; nothing more is written.
  * What the budget cannot see is what the kernel holds: the socket's send buffer and the
    peer's receive buffer. ``KernelWatch`` reads the kernel's own counters (TCP_INFO: bytes
    acknowledged by the peer, bytes not yet sent) so that a driver can tell a peer that stopped
    reading even when our own list never fills; ``batches`` counts the outbox's writes so a
    driver looks only at connections that wrote something.

The outbox knows nothing of frames or sessions: it moves bytes. The driver owns the
``asyncio.Protocol`` and forwards ``pause_writing``/``resume_writing`` to ``pause``/``resume``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

#: Collected frames are handed to the transport at once when this many bytes wait, so one
#: burst of requests with large replies cannot pile up in our list (and past a few tens of
#: KiB, fewer system calls save nothing more). asyncio's own default high-water mark.
FLUSH_AT = 64 * 1024
#: How often a writer waiting with a stall timeout looks at the buffer (and its ``give_up``).
STALL_CHECK = 0.5


class Outbox:
    """Batched writes to one asyncio transport, within a byte budget."""

    __slots__ = (
        "_budget",
        "_burst",
        "_flush_at",
        "_loop",
        "_out",
        "_scheduled",
        "_size",
        "_stall_check",
        "_stall_timeout",
        "_transport",
        "_waiters",
        "batches",
        "paused",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        budget: int,
        flush_at: int = FLUSH_AT,
        stall_timeout: float | None = None,
        stall_check: float = STALL_CHECK,
    ) -> None:
        """``budget``: bytes that may wait unread before writers wait. ``stall_timeout``:
        seconds with no progress after which a waiting writer gives up (None: never)."""
        self._loop = loop
        self._budget = budget
        self._flush_at = flush_at
        self._stall_timeout = stall_timeout
        self._stall_check = stall_check
        self._transport: asyncio.WriteTransport | None = None
        self._out: list[bytes] = []  # frames not yet handed to the transport
        self._size = 0  # bytes in _out
        self._burst = False  # inside a burst: its end writes _out
        self._scheduled = False  # a flush at the end of this loop iteration is due
        #: The budget is spent: a writer should ``await writable()`` before writing more.
        #: (A plain attribute, read on every request; only pause()/resume() set it.)
        self.paused = False
        self._waiters: list[asyncio.Future[None]] = []  # writers waiting for resume()
        #: Writes handed to the transport so far (a batch counts once): a cheap "anything
        #: written since I last looked?" for stall detectors.
        self.batches = 0

    def attach(self, transport: asyncio.WriteTransport) -> None:
        """Write to ``transport`` from now on (call from ``connection_made``)."""
        self._transport = transport
        transport.set_write_buffer_limits(high=self._budget)

    def buffered(self) -> int:
        """Bytes written but not yet taken by the peer's kernel: our list and the transport's."""
        transport = self._transport
        return self._size + (transport.get_write_buffer_size() if transport is not None else 0)

    # -- writing -----------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue a frame; it goes out at the end of the burst or of this loop iteration."""
        self._out.append(data)
        self._size += len(data)
        if self._size >= self._flush_at:
            self.flush()
        elif not self._burst and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_soon)

    def write_now(self, data: bytes) -> None:
        """Write a frame at once if nothing is queued before it (else queue it behind)."""
        transport = self._transport
        if self._out or self._burst or transport is None:
            self.write(data)
        elif not transport.is_closing():
            transport.write(data)
            self.batches += 1

    def begin_burst(self) -> None:
        """Frames written from now on wait for ``end_burst`` (or ``flush_at``)."""
        self._burst = True

    def end_burst(self) -> None:
        self._burst = False
        self.flush()

    def flush(self) -> None:
        """Hand every queued frame to the transport now."""
        out = self._out
        if not out:
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.writelines(out)
            self.batches += 1
        out.clear()
        self._size = 0

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    # -- backpressure ------------------------------------------------------------------------
    def pause(self) -> None:
        """The transport's ``pause_writing``: the budget is spent."""
        self.paused = True

    def resume(self) -> None:
        """The transport's ``resume_writing``: the peer has read; wake the waiting writers."""
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def release(self) -> None:
        """The connection is gone: drop what is queued, wake every waiting writer."""
        self._out.clear()
        self._size = 0
        self._transport = None
        self.resume()

    async def writable(self, give_up: Callable[[], bool] | None = None) -> bool:
        """Flush, then wait while the budget is spent. True once writing may go on (or the
        connection is gone); False if the peer made no progress for ``stall_timeout``
        seconds, or ``give_up()`` became true while waiting."""
        self.flush()
        if not self.paused:
            return True
        loop = self._loop
        if self._stall_timeout is None:
            while self.paused:
                waiter = loop.create_future()
                self._waiters.append(waiter)
                await waiter
            return True
        size = self.buffered()
        deadline = loop.time() + self._stall_timeout
        while self.paused:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait((waiter,), timeout=self._stall_check)
            finally:
                if not waiter.done():
                    waiter.cancel()
                    self._waiters.remove(waiter)
            if not self.paused:
                break
            now = self.buffered()
            if now < size:  # progress: the peer reads, however slowly
                size, deadline = now, loop.time() + self._stall_timeout
            elif (give_up is not None and give_up()) or loop.time() >= deadline:
                return False
        return True


# struct tcp_info (linux/tcp.h): where the two counters KernelWatch reads sit.
_TCPI_BYTES_ACKED = 120  # u64, Linux >= 4.2: bytes the peer has acknowledged
_TCPI_NOTSENT_BYTES = 144  # u32, Linux >= 4.6: bytes in the send queue not yet sent
_TCPI_SIZE = _TCPI_NOTSENT_BYTES + 4


class KernelWatch:
    """Sees a peer that stopped reading through the kernel's eyes (Linux; elsewhere it sees
    nothing and ``stalled`` stays False).

    The peer's kernel acknowledges our bytes as long as its receive buffer has room, whether
    or not its application reads; once that buffer is full, the peer advertises a zero
    window, our bytes stay in our send queue, and ``tcpi_bytes_acked`` stops growing. So:
    *stalled* = bytes wait in our send queue and not one more byte was acknowledged for
    ``timeout`` seconds. A peer that reads, however slowly, keeps acknowledging.
    """

    __slots__ = ("_acked", "_since", "_sock", "timeout")

    def __init__(self, sock: socket.socket | None, timeout: float) -> None:
        self._sock = sock
        self.timeout = timeout
        self._acked = -1
        self._since: float | None = None  # when the current stall began

    @property
    def watching(self) -> bool:
        """A stall is being timed: look again even if nothing new was written."""
        return self._since is not None

    def stalled(self, now: float) -> bool:
        """Look at the kernel's counters now (``now``: the loop's clock); True once the
        queue has not moved for ``timeout`` seconds."""
        sock = self._sock
        if sock is None:
            return False
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_SIZE)
        except (OSError, AttributeError, ValueError):  # gone, or not TCP on Linux
            self._sock = None
            return False
        if len(info) < _TCPI_SIZE:  # an older kernel: no such counters
            self._sock = None
            return False
        (acked,) = struct.unpack_from("Q", info, _TCPI_BYTES_ACKED)
        (unsent,) = struct.unpack_from("I", info, _TCPI_NOTSENT_BYTES)
        if unsent == 0 or acked != self._acked:
            self._acked = acked
            self._since = now if unsent else None
            return False
        if self._since is None:
            self._since = now
        return now - self._since >= self.timeout


__all__ = ["FLUSH_AT", "STALL_CHECK", "KernelWatch", "Outbox"]
