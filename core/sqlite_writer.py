"""GroupWriter: every write of the SQLite store, group-committed (issue 10, DESIGN Rules 9, 16).

Theory of operation
  * A write is a *job*: a function of the writer connection that stages its rows. Jobs are
    queued in call order; the first one schedules a *group* for the next loop turn
    (``call_soon``), so every write that arrives in the same turn, and every write that arrives
    while the previous group is being committed, goes into one transaction together.
    One exception keeps one request in flight as fast as it was: a send (a batch job) that
    finds the writer idle, no other task's write in this loop turn, and none of the last
    ``LONE_GROUPS_TO_GO_ALONE`` groups bigger than one, is staged and committed at once, a
    group of one (``_alone``, no trip around the loop); the writes of other tasks that
    follow it in the same turn are grouped. Under load a send always waits for a group.
  * Staging runs on the event loop (the jobs' statements are tens of microseconds and they
    read the store's caches), and so, by default, does the COMMIT: with synchronous=NORMAL
    it only writes the WAL to the OS (~40-110 us here), while handing it to a thread and
    back costs ~100 us of CPU and ~250 us of latency on this kind of machine (measured:
    ``run_in_executor`` of a no-op, 2 vCPUs). ``threaded=True`` commits on a dedicated
    thread instead, for stores whose commits wait for the disk (synchronous=FULL: an fsync
    per group); the loop serves on meanwhile and the writes that arrive join the next group.
    The sqlite3 module releases the GIL inside SQLite, so that wait costs the loop nothing.
  * A job's result is released only after the COMMIT that holds it (Rule 9: the reply to a
    send leaves after its message is durable; and since the service pushes a message only
    after ``add_message`` returns, a recipient never sees, and never acks, a message a crash
    could still lose).
  * Reads do not use the writer connection: the store reads through its own connection, which
    in WAL mode sees committed transactions only. A read therefore never sees a staged row,
    and never waits for a commit in progress.
  * Errors. A job raises its *domain* errors (``keep_going``: a taken name, not the sender)
    before it writes anything; only that job fails and the group goes on. Any other exception
    while staging, or a failed COMMIT, rolls the whole group back and fails every job in it
    with :class:`WriteFailed`: nothing of that group was acknowledged, and nothing of it stays.
  * Checkpoints (``checkpoint=``, a file store). SQLite's own checkpoint runs inside the
    COMMIT that crosses its threshold, on the loop: it copies the WAL's pages into the
    database and waits for two fsyncs (here 2-10 ms each), so every ~1,700 sends the loop
    stood still for tens of milliseconds (measured: ~17 us of wall per send at saturation,
    ``strace -w``). Instead the store turns that off and the writer, every
    ``CHECKPOINT_EVERY`` commits, runs ``checkpoint`` (a PASSIVE checkpoint on a connection
    of its own) on a thread, twice: first while the writes go on (it copies the bulk of the
    WAL and waits for its fsyncs off the loop), then with the writes *held* (the next group
    waits; the loop serves on: reads, replies, new requests, which queue for that group) to
    copy the little committed meanwhile. Since nothing is committed during the second, it
    reaches the end of the WAL, so the next transaction starts the WAL over from its
    beginning (a checkpoint that only ever races the writer never catches up, and the WAL
    then grows without end). A failed checkpoint is logged; the writes go on and the next
    one tries again.
  * Fairness. Staging yields to the loop after ``STEP_BUDGET_S`` of work, and a job may be a
    generator that yields between chunks (a large delete): the transaction stays open across
    loop turns (reads still see the committed state) and no loop turn does much more than a
    millisecond of store work. A group holds at most ``MAX_GROUP`` jobs.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A job: stages its rows on the writer connection and returns its result, or returns a
#: generator that does so in chunks (each ``yield`` lets the loop run) and returns the result.
Job = Callable[[sqlite3.Connection], Any]

#: Jobs per transaction at most: bounds the time a reply waits behind others' staging.
#: 256 sends of one recipient are ~4 ms of staging; at 50 k sends/s a group is ~10-50 jobs.
MAX_GROUP = 256
#: Groups of one a task may have in a row in one loop turn before its next write waits for a
#: group (and so lets other tasks in): a lone writer keeps its speed, and cannot hog the loop.
ALONE_PER_TURN = 3
#: Groups of at most one in a row before a send that finds the writer idle goes alone again.
#: Under load a lone group now and then is normal (one connection's request in a loop turn);
#: going alone after each of them made every tenth send of a 32-deep load a transaction of
#: its own (measured: 626 lone commits beside 1,327 groups of 4), the costliest way to
#: store one. One request in flight only ever makes groups of one, so it is back to going
#: alone after this many sends.
LONE_GROUPS_TO_GO_ALONE = 4
#: Staging hands the loop back after this much work (DESIGN: no loop turn much over ~1 ms).
STEP_BUDGET_S = 0.001
#: Commits between two checkpoints (see the module docstring). A group of 32 one-recipient
#: sends writes ~19 WAL pages, a lone send ~5: the WAL holds ~5-20 MiB when it is copied.
#: Every page is copied once per checkpoint however often it was rewritten, so the fewer
#: checkpoints, the fewer copies; each holds the writes for its two fsyncs.
CHECKPOINT_EVERY = 256


class WriteFailed(RuntimeError):
    """The database could not store a group of writes; none of them was stored."""


#: A batch job: stages the rows of several writes of one kind in a few statements and returns
#: one result per argument, in order (the sends of a group: one multi-row INSERT per table).
Batch = Callable[[sqlite3.Connection, list[Any]], list[Any]]


class Write(asyncio.Future[Any]):
    """One write of a job (``GroupWriter.run``): its future, and the write itself while it is
    queued and staged (its job, its steps, what staging it gave). With slots: a future and a
    record beside it cost ~200 ns more per write (measured, issue 10).

    A driver that resumes its coroutine itself (transports/_eager.py's ``Continuation``) puts
    its wake-up in ``wake_directly`` instead of adding a done callback; the writer then calls
    it, on its own stack, once the group is committed: a group of writes is woken without a
    loop turn (a scheduled callback) per write. Consecutive writes of the group whose
    wake-ups are equal (``==``: the same method of the same driver, bound anew per write)
    are woken by one call, with the last of them: the driver finishes its writes up to that
    one, all done by then (one connection's pipelined sends, ``Commit``: ~16-32 a group
    under load, one Python call instead of one each). When some write of the group is
    awaited otherwise (a task), every wake-up is scheduled instead, one per write, in group
    order, so the writes resume in the order they were queued."""

    __slots__ = ("arg", "batch", "failed", "job", "outcome", "steps", "wake_directly")
    job: Job | None
    batch: Batch | None
    arg: Any
    steps: Generator[None, None, Any] | None
    outcome: Any
    failed: bool
    wake_directly: Callable[[Any], None] | None


class _Waiter(asyncio.Future[Any]):
    """What a task or a ``Continuation`` that awaits a ``Commit`` waits on (``wake_directly``:
    as ``Write``'s)."""

    __slots__ = ("wake_directly",)
    wake_directly: Callable[[Any], None] | None


class Commit:
    """One write of a batch (``GroupWriter.submit``: a send), and its outcome once its group
    is committed. Not an asyncio Future, which costs ~1,100 instructions to make (its
    ``__init__`` parses ``loop=`` and calls the loop's ``get_debug``) and more to complete
    (callgrind, issue 10), on every send: a driver that finishes the send itself
    (transports/custom/_server.py's ``_StagedConnection``) reads ``queued`` and puts its
    wake-up in ``wake_directly`` (see ``Write``), which the writer calls once the group is
    committed. Awaiting it (``ChatService.send``, ``SqliteStore.add_message``) makes a
    future then, only for that send (``_Waiter``). ``queued``: not committed (nor failed)
    yet; ``failed``: ``outcome`` is the exception (the group was rolled back)."""

    __slots__ = ("_loop", "_waiter", "arg", "batch", "failed", "outcome", "queued", "wake_directly")
    #: (what the writer reads of a job's ``Write``: a batch write has neither)
    job: Job | None = None
    steps: Generator[None, None, Any] | None = None
    _loop: asyncio.AbstractEventLoop
    _waiter: _Waiter | None
    arg: Any
    batch: Batch
    failed: bool
    outcome: Any
    queued: bool
    wake_directly: Callable[[Any], None] | None

    def __await__(self) -> Generator[Any, None, Any]:
        if not self.queued:
            return _settled(self)
        if self._waiter is not None:
            raise RuntimeError("a write is awaited once")
        waiter = self._waiter = _Waiter(loop=self._loop)
        waiter.wake_directly = None
        return waiter.__await__()

    def done(self) -> bool:
        """Committed or failed, or its waiter gave up (cancelled: it is not written)."""
        return not self.queued or (self._waiter is not None and self._waiter.done())

    def result(self) -> Any:
        if self.queued:
            raise asyncio.InvalidStateError("the write is not committed yet")
        if self.failed:
            raise self.outcome
        return self.outcome

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def settle(self, outcome: Any, failed: bool) -> Any:
        """Its outcome (``failed``: an exception to raise): what to wake, if anything: itself
        or its waiter if it has a ``wake_directly``, ``_AWAITED`` when its waiter's done
        callbacks are scheduled (a task waits), None when nothing waits (or gave up)."""
        self.queued, self.outcome, self.failed = False, outcome, failed
        waiter = self._waiter
        if waiter is None:
            return self if self.wake_directly is not None else None
        if waiter.done():  # (its waiter gave up)
            return None
        if failed:
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
        return waiter if waiter.wake_directly is not None else _AWAITED


#: ``Commit.settle``: a task waits for it (its wake-up is a done callback, scheduled).
_AWAITED = object()


def _settled(write: Commit) -> Generator[Any, None, Any]:
    """What awaiting a write already committed (or failed) gives: at once, no loop turn."""
    if write.failed:
        raise write.outcome
    return write.outcome
    yield  # (a generator: what ``__await__`` returns)


def _commit(loop: asyncio.AbstractEventLoop, job: Job) -> Write:
    """A new write of a job."""
    write = Write(loop=loop)
    write.job, write.batch, write.arg = job, None, None
    write.steps, write.outcome, write.failed, write.wake_directly = None, None, False, None
    return write


class GroupWriter:
    """Group commit over one SQLite connection in autocommit mode (``isolation_level=None``).

    ``keep_going``: exception types a job raises before writing anything; they fail that job
    only. ``on_rollback`` runs after a group was rolled back (the store empties caches that
    may hold a staged row). ``commits`` counts committed groups. ``threaded``: COMMIT on a
    thread of its own, and no group of one on the loop (see the module docstring).
    ``checkpoint``: a blocking function that checkpoints the WAL, run on a thread of its own
    every ``checkpoint_every`` commits with the writes held; ``checkpoints`` counts those
    that succeeded (see the module docstring).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        threaded: bool,
        keep_going: tuple[type[Exception], ...] = (),
        on_rollback: Callable[[], None] = lambda: None,
        max_group: int = MAX_GROUP,
        checkpoint: Callable[[], Any] | None = None,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> None:
        self._db = db
        self._keep_going = keep_going
        self._on_rollback = on_rollback
        self._max_group = max_group
        # A group of one is for one write in flight; while writes come in groups (one of the
        # last LONE_GROUPS_TO_GO_ALONE groups held more than one), each waits for the next
        # group instead.
        self._grouping = False
        self._lone_groups = LONE_GROUPS_TO_GO_ALONE  # groups of at most one in a row
        self._executor = (
            ThreadPoolExecutor(1, thread_name_prefix="wirechat-commit") if threaded else None
        )
        self._queue: deque[Write | Commit] = deque()
        self._group: list[Write | Commit] = []
        # The loop of the group queued or in progress (submit: no look-up per send).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = False  # a group is being staged or committed
        self._scheduled = False
        # Groups of one run in this loop turn: a write from another task waits for a group
        # (two writes in one turn are concurrent); one task writing back to back (it never
        # yields: the write did not wait) may go alone ALONE_PER_TURN times, then yields.
        self._recent = 0
        self._recent_task: asyncio.Task[Any] | None = None
        self._idle: asyncio.Event | None = None
        self.commits = 0
        # Off-loop checkpoints (module docstring): no group starts while one runs.
        self._checkpoint = checkpoint
        self._checkpoint_every = checkpoint_every
        self._checkpointer = (
            ThreadPoolExecutor(1, thread_name_prefix="wirechat-checkpoint")
            if checkpoint is not None
            else None
        )
        self._checkpointing = False  # a checkpoint (either pass) is under way
        self._held = False  # its second pass is due or running: the next group waits for it
        self._second_due = False  # held, and the second pass waits for the group in progress
        self._since_checkpoint = 0
        self.checkpoints = 0

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Stage ``job`` in the next group; its result once that group is committed."""
        loop = asyncio.get_running_loop()
        write = _commit(loop, job)
        self._enqueue(loop, write)
        result: T = await write
        return result

    def submit(self, batch: Batch, *arg: Any) -> Commit:
        """Queue ``batch(db, [arg, ...])`` (``arg``: the tuple of the arguments after
        ``batch``), to be staged together with the writes of the same ``batch`` queued right
        beside this one: its ``Commit``, whose result is this one's outcome once the group is
        committed; done at once when it went alone (a group of one, committed before this
        returns). Queued at the call, not when awaited: no coroutine around it (the SQLite
        store's ``add_message_future``, every send: a ``partial`` of this method, so the
        call packs the send's tuple and no Python frame of the store's comes between)."""
        write = Commit()
        write.batch, write.arg, write.queued, write.failed = batch, arg, True, False
        write.outcome = write.wake_directly = write._waiter = None
        if self._busy or self._scheduled:
            # (it joins the group queued or under way: _enqueue's checks are all false. The
            # look-up of the running loop is a getpid() system call on Python 3.11)
            write._loop = self._loop  # type: ignore[assignment]  # (set with _busy/_scheduled)
            self._queue.append(write)
            return write
        loop = write._loop = asyncio.get_running_loop()
        if not (self._grouping or self._held) and self._executor is None:
            task = asyncio.current_task(loop)
            if not self._recent or (
                task is not None and task is self._recent_task and self._recent < ALONE_PER_TURN
            ):
                try:
                    write.outcome = self._alone(loop, batch, arg, task)
                except WriteFailed as exc:
                    write.outcome, write.failed = exc, True
                write.queued = False
                return write
        self._enqueue(loop, write)
        return write

    def _alone(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: Batch,
        arg: Any,
        task: asyncio.Task[Any] | None,
    ) -> Any:
        """Nothing else is being written, nor was this loop turn: a group of one, now, with
        no trip around the loop (one request in flight stays as fast as it was). The
        writes that follow in the same turn are grouped."""
        if not self._recent:
            loop.call_soon(self._quiet)
        self._recent += 1
        self._recent_task = task
        db = self._db
        try:
            db.execute("BEGIN")
            [outcome] = batch(db, [arg])
            db.execute("COMMIT")
        except Exception as exc:
            raise self._rolled_back(exc) from exc
        self.commits += 1
        self._since_checkpoint += 1
        if self._since_checkpoint >= self._checkpoint_every:
            self._hold_for_checkpoint(loop)
        return outcome

    def _enqueue(self, loop: asyncio.AbstractEventLoop, write: Write | Commit) -> None:
        self._queue.append(write)
        if not self._busy and not self._scheduled and not self._held:
            self._scheduled = True
            self._loop = loop
            loop.call_soon(self._start)

    def _quiet(self) -> None:
        self._recent, self._recent_task = 0, None

    async def run_chunked(self, job: Callable[[sqlite3.Connection], Generator[None, None, T]]) -> T:
        """Like :meth:`run` for a job that yields between chunks (see the module docstring)."""
        result: T = await self.run(job)  # type: ignore[arg-type]  # (the generator's value)
        return result

    async def aclose(self) -> None:
        """Wait for the writes already queued (and a checkpoint running), then stop the
        commit and checkpoint threads."""
        while self._busy or self._queue or self._scheduled or self._checkpointing:
            self._idle = self._idle or asyncio.Event()
            await self._idle.wait()
            self._idle = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._checkpointer is not None:
            self._checkpointer.shutdown(wait=True)

    # -- one group: BEGIN, stage (maybe over several loop turns), COMMIT ---------------------
    def _start(self) -> None:
        self._scheduled = False
        if self._busy or self._held:
            return
        while self._queue and self._queue[0].done():  # its caller gave up: not started
            self._queue.popleft()
        if not self._queue:
            self._went_idle()
            return
        self._busy = True
        self._group = []
        try:
            self._db.execute("BEGIN")
        except Exception as exc:  # the database is unusable: fail what waits, not forever
            while self._queue and len(self._group) < self._max_group:
                self._group.append(self._queue.popleft())
            self._abort(exc)
            return
        self._stage()

    def _stage(self) -> None:
        deadline = time.perf_counter() + STEP_BUDGET_S
        group, db = self._group, self._db
        try:
            while True:
                current = group[-1] if group and group[-1].steps is not None else None
                if current is None:
                    if not self._queue or len(group) >= self._max_group:
                        break
                    current = self._queue.popleft()
                    if current.done():
                        continue
                    if current.batch is not None:
                        self._run_batch(current, db)  # type: ignore[arg-type]  # (a Commit)
                        if time.perf_counter() > deadline:
                            break
                        continue
                    group.append(current)
                    if not self._begin_job(current, db):
                        continue
                    if current.steps is None:
                        if time.perf_counter() > deadline:
                            break
                        continue
                assert current.steps is not None
                try:
                    next(current.steps)
                except StopIteration as done:
                    current.steps, current.outcome = None, done.value
                except self._keep_going as exc:
                    current.steps, current.outcome, current.failed = None, exc, True
                if time.perf_counter() > deadline:
                    break
        except Exception as exc:  # anything but a domain error: the whole group goes
            self._abort(exc)
            return
        unfinished = group and group[-1].steps is not None
        if unfinished or (self._queue and len(group) < self._max_group):
            asyncio.get_running_loop().call_soon(self._stage)  # let the loop run, then go on
            return
        self._commit()

    def _run_batch(self, first: Commit, db: sqlite3.Connection) -> None:
        """``first`` and the writes of the same batch kind queued right behind it."""
        batch, queue, kind = [first], self._queue, first.batch
        room = self._max_group - len(self._group)
        while queue and len(batch) < room and queue[0].batch is kind:
            pending: Any = queue.popleft()  # (a Commit: its batch is ``kind``)
            waiter = pending._waiter
            if waiter is None or not waiter.done():  # (Commit.done(), written out)
                batch.append(pending)
        self._group += batch
        outcomes = kind(db, [pending.arg for pending in batch])
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.outcome = outcome

    def _begin_job(self, pending: Write | Commit, db: sqlite3.Connection) -> bool:
        """Run a job's first part; False if it failed with a domain error (its own only)."""
        assert pending.job is not None
        try:
            outcome = pending.job(db)
        except self._keep_going as exc:
            pending.outcome, pending.failed = exc, True
            return False
        if isinstance(outcome, Generator):
            pending.steps = outcome
        else:
            pending.outcome = outcome
        return True

    def _commit(self) -> None:
        if self._executor is None:
            try:
                self._db.execute("COMMIT")
            except Exception as exc:
                self._abort(exc)
                return
            self._committed()
            return
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._executor, self._db.execute, "COMMIT")
        done.add_done_callback(self._commit_done)

    def _commit_done(self, done: asyncio.Future[Any]) -> None:
        exc = done.exception()
        if exc is not None:
            self._abort(exc)
        else:
            self._committed()

    def _committed(self) -> None:
        self.commits += 1
        self._since_checkpoint += 1
        if len(self._group) > 1:
            self._lone_groups, self._grouping = 0, True
        else:
            self._lone_groups += 1
            self._grouping = self._lone_groups < LONE_GROUPS_TO_GO_ALONE
        group: list[Any] = self._group  # (Writes and Commits: each told apart by its batch)
        self._group = []
        wakes: list[Any] = []  # (the writes, or their waiters, whose driver wakes directly)
        scheduled = False  # a write of the group is awaited by a task (a done callback)
        for write in group:
            if write.batch is not None:  # (a Commit)
                if write._waiter is None:  # (Commit.settle written out: the common case)
                    write.queued = False
                    if write.wake_directly is not None:
                        wakes.append(write)
                    continue
                woken = write.settle(write.outcome, False)
                if woken is _AWAITED:
                    scheduled = True
                elif woken is not None:
                    wakes.append(woken)
                continue
            if write.done():
                continue
            if write.failed:
                write.set_exception(write.outcome)
            else:
                write.set_result(write.outcome)
            if write.wake_directly is not None:
                wakes.append(write)
            else:
                scheduled = True
        if self._since_checkpoint >= self._checkpoint_every:
            self._hold_for_checkpoint(asyncio.get_running_loop())
        self._next()
        self._wake(wakes, scheduled)

    @staticmethod
    def _wake(wakes: list[Any], scheduled: bool) -> None:
        """Resume the writes whose driver wakes directly (``Commit``): now, in group order, a
        call per run of equal wake-ups (with the run's last write); or, when others of the
        group resume in scheduled callbacks, scheduled behind them, one per write."""
        if scheduled:
            loop = asyncio.get_running_loop()
            for write in wakes:
                loop.call_soon(write.wake_directly, write)
            return
        wake: Any = None
        last = None
        for write in wakes:
            this = write.wake_directly  # (not None: _committed saw to it)
            if this != wake:  # (a bound method: equal if the same method of the same object)
                if wake is not None:
                    wake(last)
                wake = this
            last = write
        if wake is not None:
            wake(last)

    def _abort(self, exc: BaseException) -> None:
        """Roll the group back and fail every job in it."""
        log.error("a group of %d writes failed and was rolled back: %r", len(self._group), exc)
        error = self._rolled_back(exc)
        group, self._group = self._group, []
        loop = asyncio.get_running_loop()
        for write in group:
            if write.steps is not None:
                write.steps.close()
            if not write.done():
                failed = WriteFailed(*error.args)
                failed.__cause__ = exc
                if isinstance(write, Commit):
                    woken = write.settle(failed, True)
                    if woken is not None and woken is not _AWAITED:
                        loop.call_soon(woken.wake_directly, woken)  # (as below)
                    continue
                write.set_exception(failed)
                wake = write.wake_directly
                if wake is not None:  # (a loop turn, as a done callback: a rare path)
                    loop.call_soon(wake, write)
        self._next()

    def _rolled_back(self, exc: BaseException) -> WriteFailed:
        """Roll back what is staged; the error each write of the group fails with."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except Exception:  # the connection is broken; the next BEGIN will say so
            log.exception("rollback failed")
        self._on_rollback()
        return WriteFailed(f"the database could not store this ({exc}); nothing of it was saved")

    # -- checkpoints off the loop, with the writes held (module docstring) -------------------
    def _hold_for_checkpoint(self, loop: asyncio.AbstractEventLoop) -> None:
        """First pass: copy the WAL while the writes go on."""
        self._since_checkpoint = 0
        if self._checkpointer is None or self._checkpointing:
            return
        assert self._checkpoint is not None
        self._checkpointing = True
        done = loop.run_in_executor(self._checkpointer, self._checkpoint)
        done.add_done_callback(self._copied)

    def _copied(self, done: asyncio.Future[Any]) -> None:
        """First pass over: hold the writes for the second, once no group is in progress."""
        if self._failed(done):
            return
        self._held = self._second_due = True
        if not self._busy:
            self._second_pass()

    def _second_pass(self) -> None:
        self._second_due = False
        assert self._checkpointer is not None and self._checkpoint is not None
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._checkpointer, self._checkpoint)
        done.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[Any]) -> None:
        if self._failed(done):
            return
        self._held = self._checkpointing = False
        self.checkpoints += 1
        if not self._busy:
            self._next()

    def _failed(self, done: asyncio.Future[Any]) -> bool:
        exc = None if done.cancelled() else done.exception()
        if exc is None:
            return False
        log.warning("WAL checkpoint failed (the writes go on; the next one retries): %r", exc)
        self._held = self._checkpointing = self._second_due = False
        if not self._busy:
            self._next()
        return True

    def _next(self) -> None:
        self._busy = False
        if self._held:  # (the checkpoint's end starts the next group)
            if self._second_due:
                self._second_pass()
            return
        if self._queue:
            if not self._scheduled:  # a loop turn first: failures must not recurse
                self._scheduled = True
                self._loop = loop = asyncio.get_running_loop()
                loop.call_soon(self._start)
        else:
            self._went_idle()

    def _went_idle(self) -> None:
        if self._idle is not None:
            self._idle.set()


__all__ = [
    "ALONE_PER_TURN",
    "CHECKPOINT_EVERY",
    "LONE_GROUPS_TO_GO_ALONE",
    "MAX_GROUP",
    "STEP_BUDGET_S",
    "Batch",
    "Commit",
    "GroupWriter",
    "Job",
    "Write",
    "WriteFailed",
]
