"""Rows the bench's unit tests build, written once: the identity of the custom ``send``
latency row (what ``bench.rounds.merge_latency`` groups rounds by), with a test's figures."""

from __future__ import annotations

from typing import Any


def custom_send_row(**fields: Any) -> dict[str, Any]:
    """A latency row of the custom transport's ``send`` (memory store, cross-vCPU, 32-byte
    body, the product's client), with ``fields`` added or overriding."""
    return {
        "transport": "custom",
        "op": "send",
        "store": "memory",
        "placement": "cross",
        "body_bytes": 32,
        "fanout": None,
        "client": None,
        **fields,
    }
