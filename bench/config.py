"""How much the bench measures: one :class:`Plan` per mode, every count and duration in one
place, and which rows it measures, read from the transport registry.

Budget (issue 10 item 5): ``make bench`` within 15 minutes, ``make bench-quick`` within 2, on
a 2-vCPU machine with five wire transports. Each run records where its time went, by phase
(bench/run_phases.py; REPORT.md "Where the bench's time went"), and the plans below aim at
about 13 minutes and 100 s on a quiet machine, leaving room for the retries of disturbed
steps (``retry_budget_s``) and a slower day. ``tiny`` exists for the integration test, which
checks that every part runs and lands in results.json.

Rounds (bench/rounds.py). Every latency figure is measured in ``rounds`` rounds, each in fresh
processes and in a shuffled order; the counts below are *totals*, split evenly over the rounds
(each round does its own warm-up). Bytes on the wire are measured in full once and checked
again, on a few operations, in ``byte_checks`` rounds. Load steps run once, after the rounds.

What is measured comes from ``transports.registry``: every transport it lists (in its order:
loopback, then the ladder, then what stands beside it), and the bare reference row each entry
names (``Entry.reference``), plus ``tcp_floor``, the floor of every row. No list of transports
lives here; the one transport named is the one the lean reference client speaks.
"""

from __future__ import annotations

import random
import string
from dataclasses import asdict, dataclass, field
from typing import Any

from core import limits
from transports import registry

#: The blocking-socket round trip every row is also read against (no transport names it).
FLOOR = "tcp_floor"


def chat_transports() -> tuple[str, ...]:
    """Every transport of the registry, in its order."""
    return registry.TRANSPORTS


def ref_transports() -> tuple[str, ...]:
    """The bare reference rows: each entry's ``reference`` (registry order, once), then
    the floor."""
    refs = [e.reference for e in registry.BY_NAME.values() if e.reference]
    return tuple(dict.fromkeys([*refs, FLOOR]))


def all_transports() -> tuple[str, ...]:
    """Every name ``wirechat bench --transports`` accepts, in report order."""
    return chat_transports() + ref_transports()


def reference_of(transport: str) -> str | None:
    """The reference row a transport is read against (its registry entry's ``reference``)."""
    entry = registry.BY_NAME.get(transport)
    return None if entry is None else entry.reference


def label(name: str) -> str:
    """A row's label in tables and plots: the registry's label, or the reference's name."""
    entry = registry.BY_NAME.get(name)
    return name if entry is None else entry.label


#: Snapshots for code that wants plain tuples (computed once, at import).
CHAT_TRANSPORTS: tuple[str, ...] = chat_transports()
REF_TRANSPORTS: tuple[str, ...] = ref_transports()
ALL_TRANSPORTS: tuple[str, ...] = all_transports()

#: The lean reference client (bench/refs/lean_custom.py) is measured against this transport's
#: server in the same run: the first rung of the ladder, the one it speaks.
LEAN_TRANSPORT = "custom"
#: Its rows carry ``client: LEAN_CLIENT``; every other row is the product's ChatClient but
#: the independent clients' (bench/refs/independent.py), which carry ``INDEPENDENT_CLIENT``.
LEAN_CLIENT = "lean"
INDEPENDENT_CLIENT = "independent"

#: p50 of a transport's send over its reference row's echo p50: the target's limit, by
#: reference. One figure per family of reference, since the reference says what the floor is.
P50_LIMITS: dict[str, float] = {"grpc_echo": 1.15}
DEFAULT_P50_LIMIT = 1.2
#: Where those limits come from, for the targets table.
P50_LIMITS_SOURCE = "issue 10"

#: Other processes' work (average vCPUs) above which a timed job counts as disturbed.
NOISY_VCPUS = 0.15

#: Body of the send rows and payload of the echo rows (the same bytes, so they compare).
BODY_BYTES = 32
SEED = 20240601


#: Body sizes (bytes of UTF-8) and recipient counts of the bytes-on-the-wire sweeps.
SIZES = (1, 32, 256, 1024, 4096, 16384, limits.MAX_BODY_BYTES)
QUICK_SIZES = (1, 32, limits.MAX_BODY_BYTES)
RECIPIENT_COUNTS = (1, 10, 100)


@dataclass(frozen=True)
class WirePlan:
    """How much of the bytes on the wire to measure (bench/wire.py). Steady rows: ``repeats``
    calls (``sweep_repeats`` per sweep point), every one counted (the connection's own frames
    are never in a headline, so no call is left out)."""

    first_passes: int  # fresh-connection passes: samples of each ``first`` row
    repeats: int
    sweep_repeats: int
    body_sizes: tuple[int, ...]
    recipient_counts: tuple[int, ...]
    amortized_calls: int = 1000  # the window over which timer-driven control bytes are spread


#: Every steady byte figure is deterministic (the same in every call, bench/wire.py), so a
#: few calls per row say as much as many: 10 steady calls per op (3 per sweep point) and 3
#: fresh-connection passes re-confirm it; the rounds' re-checks (WIRE_CHECK) do too.
WIRE_FULL = WirePlan(3, 10, 3, SIZES, RECIPIENT_COUNTS)
#: The quick plan's wire measurement as the unit tests run it (bench/wire.py's default).
WIRE_QUICK = WirePlan(2, 3, 2, QUICK_SIZES, (1, 10))
#: What ``wirechat bench --quick`` measures (CI): one fresh-connection pass, two steady
#: calls, and a 100-call amortized window (the full plan's is 1000: issue 8's long window;
#: the quick figure of the connection's own frames per call is a smoke check, and says its
#: window).
WIRE_QUICK_RUN = WirePlan(1, 2, 1, QUICK_SIZES, (1, 10), amortized_calls=100)
#: What a round measures again to confirm the byte figures agree: one pass of every op at
#: the 32 B body, a short amortized window (its figures are not compared).
WIRE_CHECK = WirePlan(1, 2, 1, (32,), (1,), amortized_calls=20)


@dataclass(frozen=True)
class Plan:
    mode: str
    warmup: int
    # latency, one request in flight (memory store); the sqlite rows use ``sqlite_share`` of it
    accounts: int
    list_accounts: int
    send: int
    ack: int
    delete_account: int
    history: int  # each of read_history, mark_read, list_conversations, delete_messages
    echo: int
    lean: int  # sends by the lean blocking reference client against the same server (0: skip)
    deliver: dict[int, int]  # fan-out -> samples
    sqlite_share: float
    sqlite_extras: bool  # SQLite store: push delivery and a closed-loop step besides latency
    same_vcpu: int  # samples of send / echo with client and server on one vCPU (0: skip)
    # load
    connections: int
    depth: int  # closed loop: requests outstanding per connection
    closed_s: float
    open_s: float
    open_fractions: tuple[float, ...]  # offered rates as fractions of the closed-loop rate
    sqlite_open_fractions: tuple[float, ...]
    ref_open_fractions: tuple[float, ...]  # the reference rows' open-loop steps
    max_inflight: int
    drain_s: float
    load_warmup: int
    wire: WirePlan  # bytes on the wire (and the payload-size sweep's body sizes)
    # interference: a timed job during which other processes used more than NOISY_VCPUS (or the
    # hypervisor stole as much: bench/noise.py) is measured again (up to ``retries`` times,
    # within ``retry_budget_s`` for the whole run); the least disturbed attempt is kept
    retries: int = 2
    retry_budget_s: float = 120.0
    # rounds (bench/rounds.py): latency in ``rounds`` rounds, fresh processes each, in an
    # order shuffled with ``seed``; bytes re-checked in ``byte_checks`` of them
    rounds: int = 1
    byte_checks: int = 0
    sqlite_every_round: bool = True  # False: the SQLite rows in the last round only
    # True: a round's servers start at once at its start and idle until their unit (their
    # start-ups share both vCPUs: bench/run_servers.py); False: each starts when its unit
    # does, so no other server is ever on the measured server's vCPU
    servers_together: bool = False
    seed: int = SEED
    # sends by the independent clients (bench/refs/independent.py: websocket, grpc-stream,
    # grpc), each in blocks paired with ChatClient's against the same server (0: skip)
    independent: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def per_round(self, n: int) -> int:
        """One round's share of a total count (at least 1 when the total is not 0)."""
        return max(1, -(-n // self.rounds)) if n else 0

    def ops_counts(self, share: float = 1.0, *, rounds: int | None = None) -> dict[str, int]:
        """One round's counts of each op (``rounds``: over how many rounds the totals are
        split; the plan's by default)."""
        over = self.rounds if rounds is None else rounds

        def scaled(n: int) -> int:
            return max(1, -(-max(1, round(n * share)) // over)) if n else 0

        return {
            "accounts": scaled(self.accounts),
            "list_accounts": scaled(self.list_accounts),
            "send": scaled(self.send),
            "ack": scaled(self.ack),
            "delete_account": scaled(self.delete_account),
            "history": scaled(self.history),
        }

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["deliver"] = {str(k): v for k, v in self.deliver.items()}
        return out


FULL = Plan(
    mode="full",
    # The headline round trips (send, echo: 2000 a round) keep their counts; the other
    # operations' p50 hold with 40-400 calls a round (their p99 over rounds is rough).
    warmup=50,  # per round (5 x 50 in all): each round's fresh processes warm up again
    accounts=600,
    list_accounts=2000,
    send=10000,
    ack=2000,
    delete_account=200,
    history=600,
    echo=10000,
    lean=10000,
    deliver={1: 2000, 10: 500, 100: 100},
    sqlite_share=0.3,
    sqlite_extras=True,
    same_vcpu=3000,
    connections=4,
    depth=8,
    closed_s=3.0,
    # Open-loop steps climb from the lowest rate and stop after the first one past
    # saturation (bench/runner.py PAST_SATURATION): the steps above it are not run. 1.5 s a
    # step (2.0 until stop 31): thousands of samples even on gRPC unary's ~4k/s, and ~30 s
    # less of the 900 s budget, which the full run came within 50 s of (stop 30)
    open_s=1.5,
    open_fractions=(0.25, 0.5, 0.7, 0.85, 1.0, 1.15),
    sqlite_open_fractions=(0.5, 0.85, 1.0),
    ref_open_fractions=(0.5, 0.85, 1.0, 1.15),
    max_inflight=4096,
    drain_s=3.0,
    load_warmup=200,  # calls, spread over the connections (bench/load.py)
    wire=WIRE_FULL,
    retry_budget_s=60.0,
    rounds=5,  # the interval of a median over 5 rounds covers 93.8 %; U-test p down to 0.008
    byte_checks=2,
    # issue 8's independent clients: 1,000 a round, 4 pairs of blocks of 250 (each side),
    # 20 pairs over the rounds; about 2 s a round for the three transports together
    independent=5000,
)

QUICK = Plan(
    mode="quick",
    # five transports and five reference rows in under two minutes at CI's load (issue 10
    # item 5; about 70 s of steps on a quiet 2-vCPU machine): fewer samples per transport
    # than the full plan (p50 and CPU per call hold; the tails are rough), three rounds
    # (intervals of 75 % coverage: rough, and the report says so), the SQLite rows in the
    # last round only. The round trips keep 200 calls a round, the other operations 3-30
    # (their p50 roughly), five warm-up calls a round. bench/SCHEMA.md "The quick plan" lists
    # everything it measures less of.
    warmup=5,
    accounts=30,
    list_accounts=90,
    send=600,
    ack=90,
    delete_account=9,
    history=30,
    echo=600,
    lean=600,
    # quick: no fan-out to 100 (a hundred logins per transport); the fan-out to 10 measured
    # once, in the last round (10 samples: too few to split over the rounds)
    deliver={1: 90, 10: 10},
    sqlite_share=0.2,
    sqlite_extras=False,  # quick: the SQLite rows are latency only
    same_vcpu=0,  # the placement rows are full-mode only
    connections=4,
    depth=8,
    closed_s=0.5,  # 0.5 s a step: about a thousand requests even on gRPC unary
    open_s=0.5,
    # quick: one open-loop step per transport, at half the closed-loop rate (the latency a
    # server gives with room to spare); the climb to saturation and the reference rows' open
    # loop are the full plan's (the generator ceiling's open step runs the echo client's
    # open loop in quick too)
    open_fractions=(0.5,),
    sqlite_open_fractions=(),
    ref_open_fractions=(),
    max_inflight=4096,
    drain_s=1.0,
    load_warmup=60,
    wire=WIRE_QUICK_RUN,
    retries=0,  # quick: a disturbed row is flagged (⚠), not measured again
    retry_budget_s=0.0,
    rounds=3,
    byte_checks=0,  # quick: bytes measured once (the full plan re-checks them in 2 rounds)
    sqlite_every_round=False,
    servers_together=True,  # quick: idle servers beside the measured one (a few ms a second)
    independent=600,  # 2 pairs of 100 a round, as the lean client's: 6 pairs, rough
)

TINY = Plan(
    mode="tiny",
    warmup=3,
    accounts=5,
    list_accounts=10,
    send=30,
    ack=10,
    delete_account=3,
    history=5,
    echo=50,
    lean=30,
    deliver={1: 5, 10: 3},
    sqlite_share=0.5,
    sqlite_extras=True,
    same_vcpu=20,
    connections=2,
    depth=2,
    closed_s=0.3,
    open_s=0.3,
    open_fractions=(0.5,),
    sqlite_open_fractions=(),
    ref_open_fractions=(0.5,),
    max_inflight=256,
    drain_s=2.0,
    load_warmup=5,
    wire=WIRE_QUICK,
    retries=0,
    retry_budget_s=0.0,
    rounds=2,
    byte_checks=1,
    servers_together=True,  # the integration test runs this path (the full plan does not)
    independent=30,
)

PLANS = {plan.mode: plan for plan in (FULL, QUICK, TINY)}


def body(seed: int = SEED, size: int = BODY_BYTES) -> str:
    """The seeded ASCII body of every send and echo row."""
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))


__all__ = [
    "ALL_TRANSPORTS",
    "BODY_BYTES",
    "CHAT_TRANSPORTS",
    "DEFAULT_P50_LIMIT",
    "FLOOR",
    "FULL",
    "INDEPENDENT_CLIENT",
    "LEAN_CLIENT",
    "LEAN_TRANSPORT",
    "NOISY_VCPUS",
    "P50_LIMITS",
    "P50_LIMITS_SOURCE",
    "PLANS",
    "QUICK",
    "REF_TRANSPORTS",
    "TINY",
    "Plan",
    "all_transports",
    "body",
    "chat_transports",
    "label",
    "ref_transports",
    "reference_of",
]
