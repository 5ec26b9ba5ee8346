"""The bytes-on-the-wire definitions and the timer-driven control table, for REPORT.md.

``bench/report.py`` calls :func:`bytes_section` (after its own per-op table) so that the report
states how each byte figure is defined (issue 8: "REPORT.md states each definition") and shows
the steady ``send`` with the ids it holds for, and the amortized timer-driven control traffic.
Rows are those of ``bench/wire.py`` (``results["sizes"]``); see its module docstring.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bench.markdown import table

DEFINITIONS = """\
How each byte figure is defined:

- **first**: the first call of an op on a fresh connection, after only the calls needed to \
reach it (the median of several passes).
- **steady** (the headline): the *deterministic steady call*: whole frames attributed to the \
call that caused them (flow-control credit goes to the call whose DATA it credits), on a warm \
connection, taken only from calls that no timer-driven frame came near (gRPC's BDP and \
keepalive PINGs and their ACKs, WebSocket keepalive pings). Such a call's size does not depend \
on call spacing or run length; *holds for* names the message and request ids for which it \
holds (ids are varints, or decimal digits in JSON, so the size grows by a byte at 128, \
16384, ... or at 10, 100, ...).
- **amortized**: timer-driven control traffic, reported apart from the headline: the PINGs, \
PING ACKs and extra WINDOW_UPDATEs over a fixed window of back-to-back send round trips \
(send, push, ack), per call and per second of connection.
- Every steady figure is checked against a packet capture of a client talking to the server \
directly (`python -m bench.capture`), within 1 %.
"""


def _find(rows: Iterable[dict[str, Any]], **want: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in want.items())), None)


def bytes_section(results: dict[str, Any], order: Iterable[str] | None = None) -> str:
    """Definitions, the steady send per transport with its ids, and the amortized table."""
    sizes = results.get("sizes", [])
    if not sizes:
        return ""
    names = list(order) if order is not None else list(dict.fromkeys(r["transport"] for r in sizes))
    base = {"body_bytes": 32, "recipients": 1, "text": "ascii"}
    steady_rows, timer_rows = [], []
    for name in names:
        send = _find(sizes, transport=name, op="send", phase="steady", **base)
        if send is not None:
            steady_rows.append(
                [
                    name,
                    send["c2s_bytes"],
                    send["s2c_bytes"],
                    send["c2s_bytes"] + send["s2c_bytes"],
                    f"{send['samples']} of {send['samples'] + send['disturbed']}",
                    send.get("holds_for") or "—",
                ]
            )
        for op in ("send", "deliver"):
            row = _find(sizes, transport=name, op=op, phase="amortized")
            if row is None:
                continue
            timer_rows.append(
                [
                    name,
                    "sender (send)" if op == "send" else "receiver (push + ack)",
                    row["calls"],
                    row["seconds"],
                    row["control_bytes"],
                    f"{row['control_bytes_per_call']:.2f}",
                    f"{row['control_bytes_per_s']:.1f}",
                ]
            )
    parts = ["### How the byte figures are defined\n", DEFINITIONS]
    parts.append("### Steady send (32 B body, one 12-character recipient)\n")
    head = ["transport", "c2s B", "s2c B", "total B", "undisturbed calls", "holds for"]
    parts.append(table(head, steady_rows))
    parts.append("### Timer-driven control traffic (amortized, not in any headline)\n")
    head = ["transport", "connection", "calls", "seconds", "control B", "B / call", "B / s"]
    parts.append(table(head, timer_rows))
    return "\n".join(parts)


__all__ = ["DEFINITIONS", "bytes_section"]
