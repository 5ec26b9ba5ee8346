"""The server process's policy for Python's cyclic garbage collector, and its pause log.

Theory of operation
  * Why a policy at all: a full (generation 2) collection walks every tracked object, and the
    event loop stands still while it does. With 20,000 connections alive (about 15 tracked
    objects each) a full collection took 170-970 ms in the hostile scene (issue 14): the
    canary's p99 was mostly those pauses. By CPython's rule (3.11) a full collection runs
    whenever the objects promoted since the last one reach a quarter of those that survived
    it, so a server whose connections come and go (an attacker reconnecting as fast as it is
    evicted) keeps paying to re-walk 300,000 objects that are all alive.
  * What we do (``GcPolicy``, applied once the listeners are up):
      1. ``gc.freeze()`` the start-up heap (modules, grpc, the service's tables): never walked
         again.
      2. A young generation of 2,000 objects (CPython: 700): a request's objects (futures,
         tasks, events) mostly die before a young collection sees them, so fewer are
         promoted; a young collection walks ~2,000 objects (~1 ms).
      3. After every middle (and full) collection, freeze its survivors, in the collector's
         own callback, when the younger generations are empty, so exactly the survivors are
         frozen: what lived through two collections (a connection, a session) is not walked
         again. A collection walks at most young x middle objects (10,000), whatever the
         server holds; full collections find (almost) nothing left to walk.
      4. The cost of 3: a frozen object is never examined for reference cycles. An object
         that dies by reference count is freed at once, frozen or not (a closed connection
         is: its two cycles were removed for this, a kept ProtocolError's traceback and the
         table of bound request handlers), but frozen *cyclic* garbage is kept. So once the
         frozen heap has doubled since the last walk of everything (by at least
         ``rescan_floor`` objects) and ``rescan_interval`` (10 min) has passed, it is
         unfrozen: the next full collection walks (and cleans) everything once, a long
         pause (150-300 ms of CPU with 20,000 connections held), then freezes again. What
         cycles may keep is bounded by what accumulates in 10 minutes: in the hostile
         scene, 848 objects (failed password checks, refused gRPC calls) in 2 minutes.
  * ``GcWatch`` times every collection (``gc.callbacks``): per generation how many, their
    wall and CPU time (the CPU time does not count time the process waited for a CPU, so it
    compares runs on a shared machine), the worst; each pause of ``log_over`` or more is one
    log line, the totals one line (``summary``: at the end, and on SIGUSR1).
    ``bench.hostile`` reports both.
  * ``WIRECHAT_GC=python`` in the environment leaves the interpreter's own policy (the A/B
    switch); the pauses are timed and logged either way.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("wirechat.gc")

#: A collection at least this long (wall time) is logged on its own line.
LOG_OVER = 0.010
#: Seconds between two counts of the frozen heap for the rescan decision, once the rescan
#: interval has passed: ``gc.get_freeze_count()`` walks every frozen object.
COUNT_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class GcPolicy:
    """The collector's settings for the server (module docstring). ``None``: the interpreter's."""

    #: Net new tracked objects (allocations minus deallocations) between two young
    #: collections (CPython: 700). A young collection walks about this many objects: 2,000
    #: is ~1 ms; fewer of a request's objects (futures, tasks, events) are still alive, and
    #: promoted, when it runs.
    young: int = 2_000
    #: Young collections per middle one (CPython: 10): a middle collection walks up to
    #: young x middle objects, 10,000 (~5-10 ms of CPU when every one of them is alive, as
    #: when 700 connections arrive at once).
    middle: int = 5
    #: Middle collections per full one (CPython: 10). Everything older than the middle
    #: generation is frozen, so a full collection has (almost) nothing to walk.
    old: int = 10
    #: Freeze the survivors of every collection of this generation or older (module
    #: docstring, 3): 1, so that what survived a middle collection (a connection, a
    #: session) is not walked by later ones.
    freeze_from: int = 1
    #: Unfreeze (one walk of everything) when the frozen heap has grown this many times
    #: since the last such walk ...
    rescan_growth: float = 2.0
    #: ... and by at least this many objects (~15 per idle connection) ...
    rescan_floor: int = 100_000
    #: ... and this many seconds have passed since the last one (or the start): what frozen
    #: cycles may keep is what accumulates in 10 minutes, and the long walk (150-300 ms of
    #: CPU with 20,000 connections held) comes at most that often.
    rescan_interval: float = 600.0


def policy_from_environment() -> GcPolicy | None:
    """The policy to apply: ``None`` when ``WIRECHAT_GC=python`` asks for Python's own."""
    return None if os.environ.get("WIRECHAT_GC", "").strip() == "python" else GcPolicy()


class GcWatch:
    """Times every collection and, given a policy, applies it (module docstring)."""

    def __init__(self, policy: GcPolicy | None, log_over: float = LOG_OVER) -> None:
        self.policy = policy
        self.log_over = log_over
        self.count = [0, 0, 0]
        self.wall = [0.0, 0.0, 0.0]
        self.cpu = [0.0, 0.0, 0.0]
        self.worst = [0.0, 0.0, 0.0]
        self.worst_cpu = [0.0, 0.0, 0.0]
        self.largest_walk = 0  # objects walked by the largest collection that froze (policy)
        self.whole_walks = 0  # full collections that walked everything (after an unfreeze)
        self._walked = 0  # the frozen heap's size after the last walk of everything
        self._walked_at = time.monotonic()  # ... and when
        self._whole_walk = False  # the heap was unfrozen: the next full collection walks all
        self._frozen = 0  # gc.get_freeze_count() at its last call (see _after_collection)
        self._next_count = 0.0  # no count of the frozen heap before then (time.monotonic())
        self._started = 0.0
        self._started_cpu = 0.0
        self._installed = False

    # -- installing ----------------------------------------------------------------------
    def start(self) -> None:
        """Apply the policy now (the start-up heap is built) and time every collection."""
        policy = self.policy
        if policy is not None:
            gc.collect()
            gc.freeze()  # the start-up heap: never walked again (module docstring, 1)
            self._walked, self._walked_at = gc.get_freeze_count(), time.monotonic()
            self._frozen = self._walked
            gc.set_threshold(policy.young, policy.middle, policy.old)
        if not self._installed:
            gc.callbacks.append(self)
            self._installed = True

    def stop(self) -> None:
        """Stop timing (the policy's settings stay for the rest of the process)."""
        if self._installed:
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(self)
            self._installed = False

    # -- the callback --------------------------------------------------------------------
    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        took = time.perf_counter() - self._started
        cpu = time.thread_time() - self._started_cpu
        gen = info["generation"]
        self.count[gen] += 1
        self.wall[gen] += took
        self.cpu[gen] += cpu
        self.worst[gen] = max(self.worst[gen], took)
        self.worst_cpu[gen] = max(self.worst_cpu[gen], cpu)
        if self.policy is not None and gen >= self.policy.freeze_from:
            self._after_collection(gen, info["collected"])
        if took >= self.log_over:
            log.info(
                "gc: generation %d took %.1f ms at %.3f (cpu %.1f ms, %d collected, %d frozen)",
                gen,
                took * 1000,
                time.time(),
                cpu * 1000,
                info["collected"],
                self._frozen,  # (at the last count: gc.get_freeze_count() walks them all)
            )

    def _after_collection(self, gen: int, collected: int) -> None:
        """Freeze the survivors; unfreeze everything, now and then, once the frozen heap has
        grown enough (module docstring, 3 and 4). Runs inside the collector's callback: the
        younger generations are empty, so only survivors are frozen."""
        policy = self.policy
        assert policy is not None
        if self._whole_walk and gen < 2:
            return  # (unfrozen: the next full collection walks everything, then freezes)
        # What survived is in the oldest generation (the younger ones are empty), the rest
        # is frozen already: counting it is cheap. gc.get_freeze_count() walks the whole
        # frozen list (~300,000 objects with the flood: 4-30 ms), so it is called only when
        # its answer is needed (a whole walk, the rescan decision every rescan_interval):
        # twice per middle collection it was 5.5 % of the server's CPU in the hostile scene.
        survivors = len(gc.get_objects(2))
        gc.freeze()
        # It walked what it freed and what survived it (the frozen heap was not walked).
        self.largest_walk = max(self.largest_walk, survivors + collected)
        now = time.monotonic()
        if self._whole_walk:  # this collection walked everything: the new reference size
            self._whole_walk = False
            self.whole_walks += 1
            self._walked, self._walked_at = gc.get_freeze_count(), now
            self._frozen = self._walked
            return
        if now - self._walked_at < policy.rescan_interval or now < self._next_count:
            return
        self._next_count = now + COUNT_EVERY
        frozen = self._frozen = gc.get_freeze_count()
        limit = max(self._walked * policy.rescan_growth, self._walked + policy.rescan_floor)
        if frozen > limit:
            gc.unfreeze()  # (to the oldest generation: the next full collection walks it all)
            self._whole_walk = True

    # -- reporting -----------------------------------------------------------------------
    def summary(self) -> str:
        """One line: per generation the count, total and worst wall (and CPU) milliseconds;
        the thresholds and the frozen heap."""
        parts = [
            f"gen{g} n={self.count[g]} total={self.wall[g] * 1000:.0f}ms "
            f"(cpu {self.cpu[g] * 1000:.0f}ms) worst={self.worst[g] * 1000:.1f}ms "
            f"(cpu {self.worst_cpu[g] * 1000:.1f}ms)"
            for g in range(3)
        ]
        policy = "python" if self.policy is None else "wirechat"
        return (
            f"gc: summary {'; '.join(parts)}; policy={policy} thresholds={gc.get_threshold()} "
            f"frozen={gc.get_freeze_count()} largest_walk={self.largest_walk} "
            f"whole_walks={self.whole_walks}"
        )


__all__ = ["LOG_OVER", "GcPolicy", "GcWatch", "policy_from_environment"]
