"""How much the bench measures: one :class:`Plan` per mode, every count and duration in one place.

The full plan fits in about ten minutes on a 2-vCPU machine and the quick plan (CI) in under
two; ``tiny`` exists for the integration test, which only checks that every part runs and
lands in results.json.
"""

from __future__ import annotations

import random
import string
from dataclasses import asdict, dataclass, field
from typing import Any

#: Every chat transport and reference row the bench knows, in report order.
CHAT_TRANSPORTS: tuple[str, ...] = ("custom", "grpc", "loopback")
REF_TRANSPORTS: tuple[str, ...] = ("tcp_echo", "grpc_echo", "tcp_floor")
ALL_TRANSPORTS: tuple[str, ...] = CHAT_TRANSPORTS + REF_TRANSPORTS

#: Which floor each transport is read against.
FLOORS: dict[str, str] = {"custom": "tcp_echo", "grpc": "grpc_echo"}

#: Other processes' work (average vCPUs) above which a timed job counts as disturbed.
NOISY_VCPUS = 0.15

#: Body of the send rows and payload of the echo rows (the same bytes, so they compare).
BODY_BYTES = 32
SEED = 20240601


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
    echo: int
    deliver: dict[int, int]  # fan-out -> samples
    sqlite_share: float
    same_vcpu: int  # samples of send / echo with client and server on one vCPU (0: skip)
    # load
    connections: int
    depth: int  # closed loop: requests outstanding per connection
    closed_s: float
    open_s: float
    open_fractions: tuple[float, ...]  # offered rates as fractions of the closed-loop rate
    sqlite_open_fractions: tuple[float, ...]
    max_inflight: int
    drain_s: float
    load_warmup: int
    sizes_quick: bool
    # interference: a timed job during which other processes used more than NOISY_VCPUS is
    # measured again (up to ``retries`` times, within ``retry_budget_s`` for the whole run);
    # the least disturbed attempt is kept
    retries: int = 2
    retry_budget_s: float = 240.0
    extra: dict[str, Any] = field(default_factory=dict)

    def ops_counts(self, share: float = 1.0) -> dict[str, int]:
        def scaled(n: int) -> int:
            return max(1, round(n * share)) if n else 0

        return {
            "accounts": scaled(self.accounts),
            "list_accounts": scaled(self.list_accounts),
            "send": scaled(self.send),
            "ack": scaled(self.ack),
            "delete_account": scaled(self.delete_account),
        }

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["deliver"] = {str(k): v for k, v in self.deliver.items()}
        return out


FULL = Plan(
    mode="full",
    warmup=300,
    accounts=1000,
    list_accounts=3000,
    send=10000,
    ack=3000,
    delete_account=300,
    echo=20000,
    deliver={1: 2000, 10: 500, 100: 100},
    sqlite_share=0.3,
    same_vcpu=5000,
    connections=4,
    depth=8,
    closed_s=4.0,
    open_s=3.0,
    open_fractions=(0.1, 0.25, 0.5, 0.7, 0.85, 1.0, 1.15),
    sqlite_open_fractions=(0.25, 0.5, 0.85, 1.0),
    max_inflight=4096,
    drain_s=5.0,
    load_warmup=500,
    sizes_quick=False,
)

QUICK = Plan(
    mode="quick",
    warmup=50,
    accounts=100,
    list_accounts=300,
    send=1500,
    ack=300,
    delete_account=30,
    echo=2000,
    deliver={1: 200, 10: 50, 100: 10},
    sqlite_share=0.3,
    same_vcpu=0,  # the placement rows are full-mode only
    connections=4,
    depth=8,
    closed_s=1.0,
    open_s=1.0,
    open_fractions=(0.25, 0.7, 1.0),
    sqlite_open_fractions=(),
    max_inflight=4096,
    drain_s=3.0,
    load_warmup=100,
    sizes_quick=True,
    retries=1,
    retry_budget_s=10.0,
)

TINY = Plan(
    mode="tiny",
    warmup=3,
    accounts=5,
    list_accounts=10,
    send=30,
    ack=10,
    delete_account=3,
    echo=50,
    deliver={1: 5, 10: 3},
    sqlite_share=0.5,
    same_vcpu=20,
    connections=2,
    depth=2,
    closed_s=0.3,
    open_s=0.3,
    open_fractions=(0.5,),
    sqlite_open_fractions=(),
    max_inflight=256,
    drain_s=2.0,
    load_warmup=5,
    sizes_quick=True,
    retries=0,
    retry_budget_s=0.0,
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
    "FLOORS",
    "FULL",
    "NOISY_VCPUS",
    "PLANS",
    "QUICK",
    "REF_TRANSPORTS",
    "TINY",
    "Plan",
    "body",
]
