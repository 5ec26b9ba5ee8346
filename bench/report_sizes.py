"""REPORT.md's byte sections: bytes on the wire per operation (the definitions, the steady
send and the connection's own frames are bench/report_bytes.py's, called from here), whether
the rounds' re-measurements agreed, and the payload sizes without transport. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.markdown import TIMES, table
from bench.markdown import _fmt_x as _fmt_x
from bench.stats import ratio
from bench.targets import BASE, SIZE_KINDS, order, standard_size_rows, total_bytes


def sizes_section(results: dict[str, Any], images: Sequence[str]) -> str:
    sizes = results.get("sizes", [])
    parts = [
        "## Bytes on the wire\n",
        "Counted at the TCP level through a counting relay (so HTTP/2 frames and HPACK headers "
        "are included), per operation and direction, split into payload / framing / headers / "
        "control: each call's own frames, the same in every call; the connection's own frames "
        "(HTTP/2 WINDOW_UPDATE, PING, SETTINGS; WebSocket keepalive) are reported apart, "
        "below. *holds for*: the message and request ids for which a size holds.\n",
    ]
    if not sizes:
        parts.append("_(not measured in this run)_\n")
        return "\n".join(parts)
    if "bytes_per_op.png" in images:
        parts.append("![bytes per operation by kind](bytes_per_op.png)\n")
    if "bytes_vs_body.png" in images:
        parts.append("![bytes vs body size](bytes_vs_body.png)\n")
    per_op = standard_size_rows(sizes, results)
    head = ["op", "phase", "transport", "body B", "c2s B", "s2c B", "total B", f"{TIMES} {BASE}"]
    head += [f"{k} c2s+s2c" for k in SIZE_KINDS] + ["holds for"]
    rows = []
    for r in per_op:
        twin = next(
            (
                o
                for o in per_op
                if o["transport"] == BASE
                and (o.get("op"), o.get("phase")) == (r.get("op"), r.get("phase"))
            ),
            None,
        )
        rows.append(
            [
                r.get("op"),
                r.get("phase"),
                r["transport"],
                r.get("body_bytes"),
                r.get("c2s_bytes"),
                r.get("s2c_bytes"),
                total_bytes(r),
                _fmt_x(ratio(total_bytes(r), total_bytes(twin))),
            ]
            + [int(r.get(f"c2s_{k}", 0)) + int(r.get(f"s2c_{k}", 0)) for k in SIZE_KINDS]
            + [r.get("holds_for") or "—"]
        )
    parts.append(table(head, rows))
    parts.append(_rounds_of_bytes(results))
    # The definitions, the steady send with the ids it holds for, the timer-driven control
    # traffic: bench/report_bytes.py, beside the byte counters it describes.
    from bench.report_bytes import bytes_section

    parts.append(bytes_section(results, order(results)))
    return "\n".join(parts)


PAYLOAD_COLUMNS = (
    "op",
    "direction",
    "note",
    "text_bytes",
    "custom_message",
    "custom_bytes",
    "custom_frame_bytes",
    "protobuf_message",
    "protobuf_bytes",
    "grpc_message_bytes",
)


def payload_section(results: dict[str, Any]) -> str:
    rows = [
        r
        for r in results.get("payload_sizes", [])
        if r.get("body_bytes") in (None, 32)
        and r.get("recipients") in (None, 1)
        and r.get("text") in (None, "ascii")
    ]
    intro = (
        "## Payload sizes\n\nEach message alone, without transport: the custom codec's body "
        "and whole frame vs protobuf `SerializeToString` (and + the 5-byte gRPC prefix) of the "
        "equivalent message; 32 B ASCII body, one recipient. `text_bytes`: the UTF-8 of its "
        "strings, which any encoding carries. The body-size, UTF-8 and recipient sweeps are in "
        "results.json.\n\n"
    )
    if not rows:
        return intro + "_(not measured in this run)_\n"
    return intro + table(PAYLOAD_COLUMNS, [[r.get(k) for k in PAYLOAD_COLUMNS] for r in rows])


def _rounds_of_bytes(results: dict[str, Any]) -> str:
    """Whether the byte figures re-measured in later rounds agreed with the full run."""
    checked = [r for r in results.get("sizes", []) if r.get("rounds_checked")]
    if not checked:
        return ""
    differ = [r for r in checked if not r.get("rounds_agree")]
    text = (
        f"\nRe-measured in later rounds: {len(checked)} call figures (each op's first and "
        f"steady call at 32 B), {len(checked) - len(differ)} identical in every round"
    )
    if not differ:
        return text + ": the byte figures are deterministic, so no spread is shown.\n"
    lines = [text + "; these differed (each round's c2s + s2c):\n"]
    for r in differ:
        values = ", ".join(
            f"{x.get('c2s_bytes')}+{x.get('s2c_bytes')}" for x in r.get("rounds", [])
        )
        lines.append(f"- {r['transport']} {r['op']} {r['phase']}: {values}")
    return "\n".join(lines) + "\n"


__all__ = ["PAYLOAD_COLUMNS", "payload_section", "sizes_section"]
