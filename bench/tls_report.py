"""REPORT.md's section on what TLS costs: bench/tls_rows.py's rows beside the plain ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.markdown import TIMES, fmt_us, table
from bench.tls_rows import BYTE_OPS, QUIET_S


# -- REPORT.md ----------------------------------------------------------------
def _index(rows: Sequence[dict[str, Any]], kind: str) -> dict[tuple[str, ...], dict[str, Any]]:
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for r in rows:
        if r.get("kind") == kind:
            out[(r["transport"], r.get("op", ""), r["mode"])] = r
    return out


def _vcpus(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def section(results: dict[str, Any], images: Sequence[str] = ()) -> str:
    """REPORT.md: the TLS rows beside the plain ones, and how each figure is counted."""
    rows = results.get("tls") or []
    if not rows:
        return ""
    transports = list(dict.fromkeys(r["transport"] for r in rows))
    sizes = _index(rows, "bytes")
    parts = [
        "## What TLS costs (a real deployment's price)\n",
        "Every wire transport measured twice in one job, in clear and over TLS (a throwaway CA "
        "made for the run; the client verifies the certificate). **Bytes** are the TCP payload "
        "counted at a relay in front of the server (TLS records are opaque there, so the "
        "transports' frame counters are not used; the plain figures here are counted the same "
        "way), the median call of each op, after the relay was quiet for "
        f"{QUIET_S * 1000:.0f} ms. *Records*: TLS records of that call (c2s + s2c), read from "
        "the record headers. *Per record*: (TLS - plain) ÷ records, for the operations whose "
        "plaintext is the same in both modes (login, send, deliver): measured, not assumed. "
        "`connect` is TCP connect + TLS handshake + the transport's own handshake, so its "
        "difference is the handshake's bytes; `deliver` is the push on the recipient's "
        "connection with its ack. Both servers on the server vCPU, the client on the other.\n",
    ]
    versions = {
        (r["transport"]): ", ".join(
            str(r[k]) for k in ("tls_version", "cipher_suite", "key_exchange") if r.get(k)
        )
        for r in rows
        if r.get("kind") == "bytes" and r["mode"] == "tls" and r.get("tls_version")
    }
    head = ["transport", "op", "plain B (c2s+s2c)", "TLS B (c2s+s2c)", "+ bytes", "records"]
    head += ["per record"]
    body = []
    for t in transports:
        for op in BYTE_OPS:
            p, s = sizes.get((t, op, "plain")), sizes.get((t, op, "tls"))
            if p is None or s is None:
                continue
            plain_total = p["c2s_bytes"] + p["s2c_bytes"]
            tls_total = s["c2s_bytes"] + s["s2c_bytes"]
            records = (s["c2s_records"] or 0) + (s["s2c_records"] or 0)
            extra = tls_total - plain_total
            per = (
                f"{extra / records:.1f}" if records and op in ("login", "send", "deliver") else "—"
            )
            body.append(
                [
                    t,
                    op,
                    f"{p['c2s_bytes']:,} + {p['s2c_bytes']:,} = {plain_total:,}",
                    f"{s['c2s_bytes']:,} + {s['s2c_bytes']:,} = {tls_total:,}",
                    f"{extra:+,}",
                    f"{s['c2s_records']} + {s['s2c_records']}",
                    per,
                ]
            )
    parts.append(table(head, body))
    if versions:
        chosen = "; ".join(f"`{t}`: {v}" for t, v in versions.items())
        parts.append(f"\nNegotiated (from the ServerHello): {chosen}.\n")
    hands = _index(rows, "handshake")
    sends = _index(rows, "send")
    head = ["transport", "connect p50 µs plain", "TLS", "client CPU µs plain", "TLS"]
    head += ["server CPU µs plain", "TLS", "send p50 µs plain", "TLS", "ratio"]
    head += ["send server CPU µs plain", "TLS", "send client CPU µs plain", "TLS"]
    head += ["other vCPUs"]
    body = []
    for t in transports:
        hp, ht = hands.get((t, "", "plain")), hands.get((t, "", "tls"))
        sp, st = sends.get((t, "", "plain")), sends.get((t, "", "tls"))
        if not (hp and ht and sp and st):
            continue
        body.append(
            [
                t,
                fmt_us(hp["p50_us"]),
                fmt_us(ht["p50_us"]),
                fmt_us(hp["client_cpu_us"]),
                fmt_us(ht["client_cpu_us"]),
                fmt_us(hp["server_cpu_us"]),
                fmt_us(ht["server_cpu_us"]),
                fmt_us(sp["p50_us"]),
                fmt_us(st["p50_us"]),
                f"{st['p50_us'] / sp['p50_us']:.2f}{TIMES}" if sp["p50_us"] else "—",
                fmt_us(sp["server_cpu_us"]),
                fmt_us(st["server_cpu_us"]),
                fmt_us(sp["client_cpu_us"]),
                fmt_us(st["client_cpu_us"]),
                _vcpus(st.get("other_vcpus")),
            ]
        )
    if body:
        n_hand = next(iter(hands.values()))["samples"]
        n_send = next(iter(sends.values()))["samples"]
        parts.append(
            f"\n**Handshake and send time.** `connect()` straight to the server ({n_hand} per "
            "mode, alternating clear and TLS, each followed by `close()`): wall p50, and CPU of "
            f"client and server per connect. `send` p50 ({n_send} per mode, 32 B to an offline "
            "recipient as in the latency table, one in flight, in alternating blocks): the "
            "ratio is TLS ÷ plain; CPU per send from the process clocks around each block. "
            "*Other vCPUs*: other processes' work during the job (above ~0.15 the times are "
            "disturbed; the byte figures are not).\n\n"
        )
        parts.append(table(head, body))
    return "\n".join(parts) + "\n"


__all__ = ["section"]
