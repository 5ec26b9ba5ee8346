"""The bytes-on-the-wire definitions and the table of the connection's own frames, for REPORT.md.

``bench/report.py`` calls :func:`bytes_section` (after its own per-op table) so that the report
states how each byte figure is defined (issue 8: "REPORT.md states each definition") and shows
the steady ``send`` with the ids it holds for, and the connection's own frames, amortized.
Rows are those of ``bench/wire.py`` (``results["sizes"]``); see its module docstring.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bench.markdown import table

DEFINITIONS = """\
How each byte figure is defined:

- **steady** (the headline): the *deterministic steady call*: the whole frames of one call on \
a warm connection (a method's first call on it made, unmeasured), and only the call's own \
frames: for HTTP/2 its HEADERS (request, response headers, trailers), CONTINUATION, DATA and \
RST_STREAM; for custom, protobuf-tcp and WebSocket every frame of the call. The criterion is \
determinism: a frame is in a headline only if the call alone decides whether it is written \
and how long it is. So the figure is the same in every call and every run, whatever the call \
spacing or run length.
- **the connection's own frames** are never in a headline: gRPC's PINGs and PING ACKs (BDP \
estimator, keepalive: on a timer), its WINDOW_UPDATEs on stream 0 and on the call's stream \
(grpc-core returns credit by its own estimate: with this call, with the next one, merged, \
split or not at all; even the stream credit seen with almost every call is missing from some, \
so it is not the call's by the criterion above), SETTINGS and their ACKs after the handshake, \
GOAWAY; WebSocket keepalive PING/PONG. They are reported in the last table below: over a \
fixed window of back-to-back send round trips (send, push, ack; 1,000 in the full plan, \
300 in `--quick`: the *calls* column), per call \
and per second of connection. A call's cost over a long run is its headline plus that share.
- **first**: the first call of an op on a fresh connection, after only the calls needed to \
reach it (the median of several passes). HPACK's first literals make gRPC's dearer, and on \
gRPC (unary) they may differ between passes by 3 B or about 20 B c2s: grpc-core writes a \
10 s deadline as `10S` or `10100m` by its own clock, and a new value costs a literal; in \
the steady rows, after 128 warm-up round trips, the values it writes are indexed (one byte).
- **connect**: the connection's set-up, every frame (gRPC: preface, SETTINGS, their ACKs and \
the initial WINDOW_UPDATE).
- **holds for**: sizes that carry an id hold for the ids named: ids are varints in custom, \
protobuf-tcp and gRPC (one byte up to 127, two bytes for 128..16383, three beyond), decimal \
digits in WebSocket's JSON (a byte more at 10, 100, 1000, ...). The steady rows are measured \
after 128 warm-up round trips, so their message and request ids are past 127.
- **resume, change_password, password_changed** (issue 13; `bench/wire_account.py`): \
`resume` is a login by resume token instead of the password on an anonymous connection: the \
token (43 characters: `secrets.token_urlsafe(32)`, always that long) out, the login reply \
(the same token, the pending count, the name; on gRPC unary also the Subscribe stream its \
client opens, as for `login`) back; nothing pending. `change_password` is the caller's \
request (old and new password, 16 bytes each, end the other sessions) and reply (a new \
token, one session ended). `password_changed` is what the user's one other session's \
connection carries when that change ends it: the notice, and what the end writes on the \
connection until it is quiet (WebSocket's close handshake, gRPC's end of the push stream); \
that session made only its connect and login, so gRPC's HPACK table is a fresh one's. The \
`first` rows are one call each, on the connections the steady rows then use.
- Every steady send, deliver and ack figure is checked against a packet capture of clients \
talking to the server directly (`python -m bench.capture`): each captured call's bytes less \
the connection's frames (found by a walk of the captured bytes) must equal the headline \
within 1 % (they are equal to the byte).
"""


def _find(rows: Iterable[dict[str, Any]], **want: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in want.items())), None)


def _calls(row: dict[str, Any]) -> str:
    """'12, all identical', or the spread each way (a headline should never have one)."""
    ranges = [row.get(f"{d}_range") or [0, 0] for d in ("c2s", "s2c")]
    if all(lo == hi for lo, hi in ranges):
        return f"{row['samples']}, all identical"
    spread = " / ".join(f"{lo}..{hi}" for lo, hi in ranges)
    return f"{row['samples']}, spread {spread}"


def _kinds(row: dict[str, Any]) -> str:
    """'WINDOW_UPDATE 26,000, PING 170' over both directions, largest first."""
    kinds: dict[str, int] = {}
    for d in ("c2s", "s2c"):
        for kind, size in (row.get(f"{d}_detail") or {}).items():
            kinds[kind] = kinds.get(kind, 0) + int(size)
    ordered = sorted(kinds.items(), key=lambda item: -item[1])
    return ", ".join(f"{kind} {size:,}" for kind, size in ordered) or "—"


#: The issue-13 rows of the account table: (op, its label).
ACCOUNT_ROWS = (
    ("resume", "resume"),
    ("change_password", "change password"),
    ("password_changed", "the other session's end"),
)


def account_rows(sizes: list[dict[str, Any]], names: Iterable[str]) -> list[list[Any]]:
    """One line per transport: the steady resume, change_password and password_changed,
    each as c2s + s2c = total (— where not measured)."""
    lines = []
    for name in names:
        cells: list[Any] = [name]
        found = False
        for op, _ in ACCOUNT_ROWS:
            row = _find(sizes, transport=name, op=op, phase="steady")
            if row is None:
                cells.append("—")
                continue
            found = True
            c2s, s2c = row["c2s_bytes"], row["s2c_bytes"]
            cells.append(f"{c2s} + {s2c} = {c2s + s2c}")
        if found:
            lines.append(cells)
    return lines


def bytes_section(results: dict[str, Any], order: Iterable[str] | None = None) -> str:
    """Definitions, the steady send per transport with its ids, and the amortized table of
    the connection's own frames."""
    sizes = results.get("sizes", [])
    if not sizes:
        return ""
    names = list(order) if order is not None else list(dict.fromkeys(r["transport"] for r in sizes))
    base = {"body_bytes": 32, "recipients": 1, "text": "ascii"}
    steady_rows, timer_rows = [], []
    for name in names:
        send = _find(sizes, transport=name, op="send", phase="steady", **base)
        window = _find(sizes, transport=name, op="send", phase="amortized")
        if send is not None:
            long_run = "—" if window is None else f"{window['c2s_bytes'] + window['s2c_bytes']:.1f}"
            steady_rows.append(
                [
                    name,
                    send["c2s_bytes"],
                    send["s2c_bytes"],
                    send["c2s_bytes"] + send["s2c_bytes"],
                    _calls(send),
                    long_run,
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
                    _kinds(row),
                ]
            )
    parts = ["### How the byte figures are defined\n", DEFINITIONS]
    parts.append(
        "### Steady send (32 B body, one 12-character recipient)\n\n"
        "*over the window*: the sender's bytes per call over the long window of the last "
        "table, the connection's own frames included.\n"
    )
    head = ["transport", "c2s B", "s2c B", "total B", "calls", "over the window B / call"]
    head.append("holds for")
    parts.append(table(head, steady_rows))
    accounts = account_rows(sizes, names)
    if accounts:
        parts.append(
            "### Resume and change password (issue 13), steady, c2s + s2c B\n\n"
            "Each the same in every call and every run; the definitions above.\n"
        )
        parts.append(table(["transport", *(label for _, label in ACCOUNT_ROWS)], accounts))
    parts.append("### The connection's own frames (amortized, not in any headline)\n")
    head = ["transport", "connection", "calls", "seconds", "B", "B / call", "B / s", "by kind"]
    parts.append(table(head, timer_rows))
    return "\n".join(parts)


__all__ = ["ACCOUNT_ROWS", "DEFINITIONS", "account_rows", "bytes_section"]
