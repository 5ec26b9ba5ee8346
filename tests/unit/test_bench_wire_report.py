"""bench/report_bytes.py: the byte definitions and tables that REPORT.md shows."""

from __future__ import annotations

from bench.report_bytes import bytes_section


def steady(transport: str, c2s: int, s2c: int, holds_for: str | None) -> dict:
    return {
        "transport": transport,
        "op": "send",
        "phase": "steady",
        "body_bytes": 32,
        "recipients": 1,
        "text": "ascii",
        "c2s_bytes": c2s,
        "s2c_bytes": s2c,
        "samples": 3,
        "disturbed": 7,
        "holds_for": holds_for,
    }


def amortized(transport: str, op: str, control: int) -> dict:
    return {
        "transport": transport,
        "op": op,
        "phase": "amortized",
        "calls": 1000,
        "seconds": 5.0,
        "control_bytes": control,
        "control_bytes_per_call": control / 1000,
        "control_bytes_per_s": control / 5.0,
    }


def test_the_section_defines_each_figure_and_shows_ids_and_timer_traffic() -> None:
    sizes = [
        steady("custom", 49, 12, "message ids 128..16383; request ids 0..127"),
        steady("grpc", 147, 74, "message ids 128..16383"),
        amortized("grpc", "send", 300),
        amortized("grpc", "deliver", 340),
    ]
    text = bytes_section({"sizes": sizes}, order=["custom", "grpc"])
    assert "deterministic steady call" in text and "amortized" in text
    assert (
        "| custom | 49 | 12 | 61 | 3 of 10 | message ids 128..16383; request ids 0..127 |" in text
    )
    assert "| grpc | receiver (push + ack) | 1,000 | 5.0 | 340 | 0.34 | 68.0 |" in text
    assert bytes_section({"sizes": []}) == ""
