"""The Targets the bench is judged by, and the lookups the report and plots share. Pure.

A target is evaluated from the run's own rows only (results.json), so any results file can be
re-judged; a figure the run lacks makes its target ``n/a``, never a PASS. A ratio of two
latency rows carries its 95 % interval, computed on the ratio over paired rounds
(bench.rounds.ratio_interval), and the interval decides (:func:`judge`): PASS only if all of
it meets the limit, MISS only if none of it does, otherwise "not settled". Which transports
there are, their order and the reference row each is read against come from the run's
``meta.registry`` (bench.ladder.registry_info), never from a list here.
"""

from __future__ import annotations

from typing import Any

from bench.config import (
    DEFAULT_P50_LIMIT,
    FLOOR,
    INDEPENDENT_CLIENT,
    LEAN_CLIENT,
    LEAN_TRANSPORT,
    NOISY_VCPUS,
    P50_LIMITS,
    P50_LIMITS_SOURCE,
)
from bench.ladder import registry_info
from bench.markdown import fmt_rate, fmt_us
from bench.noise import worst
from bench.refs import CONTRACT_FLOORS, CONTRACT_WORDS, INDEPENDENT_TRANSPORTS
from bench.rounds import ratio_interval
from bench.stats import CONFIDENCE, median, median_interval, ratio

Row = dict[str, Any]
#: The bench's p50 for send against the lean independent client's: within this fraction.
LEAN_P50_TOLERANCE = 0.15
#: The product client's CPU per send against the lean client's: at most this many times.
LEAN_CPU_LIMIT = 1.3
#: Where the lean-client limits come from (independent clients reproduce the figures).
LEAN_SOURCE = "issue 8"
LEAN_P50_NAME = f"{LEAN_TRANSPORT} send p50 within {LEAN_P50_TOLERANCE:.0%} of a lean client's"
LEAN_CPU_NAME = f"{LEAN_TRANSPORT} client CPU per send <= {LEAN_CPU_LIMIT}x a lean client's"
#: The same limit read against the independent blocking client (bench/refs/independent.py:
#: frames by hand, none of our code), the leanest client of the protocol the bench has.
INDEPENDENT_CPU_NAME = (
    f"{LEAN_TRANSPORT} client CPU per send <= {LEAN_CPU_LIMIT}x an independent blocking client's"
)
#: Saturation and bytes targets: the hand-designed protocol against gRPC unary (issue 2).
BASE, GRPC = "custom", "grpc"
BASE_SOURCE = "issue 2"
#: Issue 10's group-commit target: the file store's send saturation at least this share of the
#: memory store's, same transport, same run.
SQLITE_SHARE, SQLITE_SOURCE = 0.7, "issue 10"
SIZE_KINDS = ("payload", "framing", "headers", "control")
OPS = (
    "signup",
    "login",
    "logout",
    "list_accounts",
    "send",
    "ack",
    "delete_account",
    "echo",
)


# -- lookups -----------------------------------------------------------------------------------
def order(results: dict[str, Any]) -> list[str]:
    """Every transport and reference row, in report order: the registry's order (loopback,
    the ladder, what stands beside it), then the reference rows they name, then the floor,
    then anything else the rows hold."""
    info = registry_info(results)
    names = [i["name"] for i in info]
    names += [i["reference"] for i in info if i.get("reference")]
    names.append(FLOOR)
    for section in ("latency", "load", "sizes"):
        names += [r["transport"] for r in results.get(section, []) if r.get("transport")]
    return list(dict.fromkeys(names))


def references(results: dict[str, Any]) -> dict[str, str]:
    """Transport -> the reference row it is read against."""
    return {i["name"]: i["reference"] for i in registry_info(results) if i.get("reference")}


def is_reference(results: dict[str, Any], name: str) -> bool:
    """A bare reference row (echo), not a chat transport."""
    return name not in {i["name"] for i in registry_info(results)}


def label(results: dict[str, Any], name: str) -> str:
    """The registry's label of a transport, or the reference row's name."""
    return next((i["label"] for i in registry_info(results) if i["name"] == name), name)


def transport_rank(transport: str, results: dict[str, Any] | None = None) -> int:
    """Report order of a transport (unknown ones last)."""
    names = order(results or {})
    return names.index(transport) if transport in names else len(names)


def find_latency(
    results: dict[str, Any],
    transport: str,
    op: str,
    *,
    store: str | None = None,
    placement: str | None = None,
    fanout: int | None = None,
    client: str | None = None,
) -> Row | None:
    """The latency row for transport/op (memory or none store, main placement by default),
    measured by the product's client unless ``client`` names another (``"lean"``)."""
    stores = (store,) if store else ("memory", "none")
    places = (placement,) if placement else ("cross", "in-process", "unpinned")
    for row in results.get("latency", []):
        if (
            row["transport"] == transport
            and row["op"] == op
            and row["store"] in stores
            and row["placement"] in places
            and (fanout is None or row.get("fanout") == fanout)
            and row.get("client") == client
        ):
            return row
    return None


def round_trip_row(results: dict[str, Any], transport: str) -> Row | None:
    """The 32 B round trip of a transport: ``send`` for chat transports, ``echo`` for refs."""
    op = "echo" if is_reference(results, transport) else "send"
    return find_latency(results, transport, op)


def lean_row(results: dict[str, Any]) -> Row | None:
    """The lean reference client's send against the same server (bench/refs/lean_custom.py)."""
    return find_latency(results, LEAN_TRANSPORT, "send", client=LEAN_CLIENT)


def independent_row(results: dict[str, Any], transport: str) -> Row | None:
    """A transport's send by its independent client against the same server
    (bench/refs/independent.py, bench/latency.py run_independent)."""
    return find_latency(results, transport, "send", client=INDEPENDENT_CLIENT)


def floor_p50_name(transport: str, ref: str, limit: float) -> str:
    """Issue 10's target of a transport against its reference row."""
    return f"{transport} send p50 <= {limit}x {ref} p50"


def independent_p50_name(transport: str, asyncio: bool = True) -> str:
    """Issue 8's target of a transport with an independent client: against its independent
    asyncio client (``asyncio``), or, in results whose pairs have none, its blocking one."""
    kind = "an independent asyncio client's" if asyncio else "an independent client's"
    return f"{transport} send p50 within {LEAN_P50_TOLERANCE:.0%} of {kind}"


def saturation(results: dict[str, Any], transport: str, store: str = "memory") -> Row | None:
    """The load step with the highest achieved rate for this transport and store, among the
    rows a lean generator measured where the run has any (bench/loadgen.py,
    bench/refs/lean_load.py: they keep the server's pipeline full, so they show the server),
    else among every row (the product client's: they may show the client, and the report
    says so)."""
    rows = [
        r
        for r in results.get("load", [])
        if r["transport"] == transport and r["store"] == store and r["completed"]
    ]
    lean = [r for r in rows if r.get("engine", "client") != "client"]
    return max(lean or rows, key=lambda r: r["achieved_per_s"], default=None)


def client_saturation(results: dict[str, Any], transport: str, store: str = "memory") -> Row | None:
    """The product client's closed-loop step for this transport and store (what the client
    costs and reaches), or None."""
    return next(
        (
            r
            for r in results.get("load", [])
            if (r["transport"], r["store"], r["mode"]) == (transport, store, "closed")
            and r.get("engine", "client") == "client"
            and r["completed"]
        ),
        None,
    )


def generator_of(row: Row | None) -> str:
    """Which generator measured a load row, in the targets' words."""
    engine = (row or {}).get("engine", "client")
    return {
        "lean-frames": "the lean frame generator",
        "lean-ws": "the lean websocket generator",
        "lean": "the lean echo generator",
    }.get(engine, "the product client")


def steady_send_bytes(results: dict[str, Any], transport: str) -> Row | None:
    """The steady-state send row of the size table: 32 B body (or the nearest), 1 recipient."""
    rows = [
        r
        for r in results.get("sizes", [])
        if r.get("transport") == transport
        and r.get("op") == "send"
        and r.get("phase") == "steady"
        and r.get("recipients", 1) == 1
        and r.get("text", "ascii") == "ascii"
    ]
    return min(rows, key=lambda r: abs((r.get("body_bytes") or 0) - 32), default=None)


def standard_size_rows(sizes: list[Row], results: dict[str, Any] | None = None) -> list[Row]:
    """One row per (op, phase, transport): ASCII, one recipient, body nearest 32 B.

    The rest of the size rows (the body-size sweep, non-ASCII text, many recipients) are
    what the bytes-vs-body plot draws. ``results`` gives the transports' order.
    """
    names = order(results or {"sizes": sizes})
    best: dict[tuple[str, str, str], Row] = {}
    for r in sizes:
        if r.get("text") not in ("ascii", None) or r.get("recipients") not in (1, None):
            continue
        if r.get("phase") not in ("first", "steady"):  # amortized control: bench/report_bytes
            continue
        key = (str(r.get("op")), str(r.get("phase")), str(r.get("transport")))
        distance = abs((r.get("body_bytes") or 0) - 32)
        if key not in best or distance < abs((best[key].get("body_bytes") or 0) - 32):
            best[key] = r
    return sorted(
        best.values(),
        key=lambda r: (
            OPS.index(r["op"]) if r.get("op") in OPS else len(OPS),
            str(r.get("op")),
            r.get("phase") != "first",
            names.index(r["transport"]) if r["transport"] in names else len(names),
        ),
    )


def total_bytes(row: Row | None) -> int | None:
    """Both directions of a size row."""
    if row is None:
        return None
    return int(row.get("c2s_bytes", 0)) + int(row.get("s2c_bytes", 0))


# -- targets -----------------------------------------------------------------------------------
def disturbed(*rows: Row | None) -> str | None:
    """What disturbed these timing rows, if any saw more than NOISY_VCPUS of other processes'
    work or of hypervisor steal (bench.noise: the figure is then suspect), else None."""
    seen = [r for r in rows if r is not None]
    other, steal = worst(seen, "other_vcpus"), worst(seen, "steal_vcpus")
    said = [f"other processes used {other:.2f} vCPUs"] if other > NOISY_VCPUS else []
    said += [f"the hypervisor stole {steal:.2f} vCPUs"] if steal > NOISY_VCPUS else []
    return " and ".join(said) + " meanwhile" if said else None


#: A target whose interval straddles its limit: the run cannot tell PASS from MISS.
UNSETTLED = "not settled"


def meets(value: float, limit: float, better: str) -> bool:
    """Whether one value meets a limit (``better``: lower, higher or within)."""
    if better == "lower":
        return value <= limit
    if better == "higher":
        return value >= limit
    return abs(value - 1.0) <= limit + 1e-9


def judge(value: float | None, limit: float, better: str, ci: list[float] | None = None) -> str:
    """PASS only if the whole interval meets the limit, MISS only if none of it does, else
    "not settled". Without an interval (one round, a deterministic figure) the value decides.
    """
    if value is None:
        return "n/a"
    if ci is None:
        return "PASS" if meets(value, limit, better) else "MISS"
    low, high = ci
    if better == "within":  # the interval against the band [1 - limit, 1 + limit]
        if meets(low, limit, better) and meets(high, limit, better):
            return "PASS"
        if high < 1.0 - limit or low > 1.0 + limit:
            return "MISS"
        return UNSETTLED
    ends = (meets(low, limit, better), meets(high, limit, better))
    if all(ends):
        return "PASS"
    if not any(ends):
        return "MISS"
    return UNSETTLED


def _target(
    name: str,
    value: float | None,
    limit: float,
    better: str,
    detail: str,
    noise: str | None = None,
    ci: list[float] | None = None,
    source: str | None = None,
) -> Row:
    """``better``: "lower" (value <= limit), "higher" (value >= limit) or "within" (the value
    is a ratio within ``limit`` of 1, either side); ``ci``: the value's 95 % interval
    (bench.rounds), which decides the status (:func:`judge`); ``source``: the issue that
    set the limit."""
    status = judge(value, limit, better, ci)
    if noise is not None:
        detail += f"; disturbed: {noise}"
    return {
        "name": name,
        "value": None if value is None else round(value, 3),
        "ci": ci,
        "limit": limit,
        "better": better,
        "status": status,
        "detail": detail,
        "disturbed": noise is not None,
        "source": source,
    }


def p50(row: Row | None) -> float | None:
    """The row's p50, or None without a row."""
    return None if row is None else row.get("p50_us")


def _client_cpu(row: Row | None) -> float | None:
    return None if row is None else row.get("client_cpu_us_per_op")


def _floor_targets(results: dict[str, Any]) -> list[Row]:
    """Each transport's send p50 against the reference row its registry entry names.

    Where the transport's independent step paired blocks of the reference's echo client with
    ChatClient's (stop 25 on: ``echo_*`` in its pairs), from those pairs (the median of the
    per-pair ratios, same moment, both servers on one vCPU); else the two latency rows, each
    measured in a step of its own."""
    out = []
    asked = results.get("meta", {}).get("transports")
    for transport, ref in references(results).items():
        if asked is not None and transport not in asked:
            continue  # not asked for in this run
        limit = P50_LIMITS.get(ref, DEFAULT_P50_LIMIT)
        row = independent_row(results, transport)
        pairs: list[Row] = (row or {}).get("pairs") or []
        if pairs and all("echo_p50_us" in p and "bare_p50_us" in p for p in pairs):
            bare_words = str((row or {}).get("bare_impl") or "the independent asyncio client")
            out.append(
                _paired_target(
                    floor_p50_name(transport, ref, limit),
                    row,
                    pairs,
                    "p50_us",
                    limit,
                    "lower",
                    "send p50",
                    "echo",
                    f"{ref}'s own client against its echo",
                    (bare_words, "our server's and protocol's share"),
                    source=P50_LIMITS_SOURCE,
                    servers="each client its own server, the two on one vCPU",
                    extra=_contract_share(transport, pairs),
                )
            )
            continue
        mine, floor = round_trip_row(results, transport), round_trip_row(results, ref)
        out.append(
            _target(
                floor_p50_name(transport, ref, limit),
                ratio(p50(mine), p50(floor)),
                limit,
                "lower",
                f"{transport} send {fmt_us(p50(mine))} µs vs {ref} {fmt_us(p50(floor))} µs "
                "(memory store, 32 B, one in flight, different vCPUs)",
                disturbed(mine, floor),
                ratio_interval(mine, floor, "p50_us"),
                P50_LIMITS_SOURCE,
            )
        )
    return out


def _contract_share(transport: str, pairs: list[Row]) -> str:
    """What the transport's contract alone costs over the echo, where the pairs have blocks
    of the bare client against a server of the contract with no chat behind it (``contract``:
    bench.refs.CONTRACT_FLOORS, e.g. bench/refs/null_chat.py for gRPC): no server can read
    below it."""
    if not all("contract_p50_us" in p for p in pairs):
        return ""
    value, ci, _ = paired_ratio(pairs, "p50_us", "contract", "echo")
    if value is None:
        return ""
    span = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    ours, _, _ = paired_ratio(pairs, "p50_us", "bare", "contract")
    floor = CONTRACT_FLOORS.get(transport, "")
    words = CONTRACT_WORDS.get(transport, "the contract served with no chat behind it")
    return (
        f"; the same bare client against bench/refs/{floor}.py ({words}: the contract's own "
        f"floor, which no server reads below) {value:.2f}x{span} the echo one"
        + ("" if ours is None else f", so our server's own share is {ours:.2f}x")
    )


def pair_ratios(pairs: list[Row], figure: str, of: str = "chat", to: str = "lean") -> list[float]:
    """Client ``of`` ÷ client ``to`` (``chat``: ChatClient, ``lean``, ``bare``: the bare
    asyncio one) of one figure (``p50_us`` or ``cpu_us``) in each block pair that has both
    (bench/latency.py run_lean: the lean row's ``pairs``)."""
    values = (ratio(p.get(f"{of}_{figure}"), p.get(f"{to}_{figure}")) for p in pairs)
    return [value for value in values if value is not None and value > 0]


def paired_ratio(
    pairs: list[Row], figure: str, of: str = "chat", to: str = "lean"
) -> tuple[float | None, list[float] | None, str]:
    """(median of the per-pair ratios, its 95 % interval, a note on the interval) of one
    figure over every block pair of every round.

    The interval is bench.stats ``median_interval`` over the per-pair ratios: between two
    order statistics chosen with the binomial distribution, distribution-free (what a
    percentile bootstrap of a median approximates); with fewer than 6 pairs it is their
    whole range and the note says its real coverage."""
    ratios = pair_ratios(pairs, figure, of, to)
    interval = median_interval(ratios)
    if interval is None:
        return median(ratios), None, ""
    low, high, coverage = interval
    note = f", interval covers {coverage:.1%}" if coverage < CONFIDENCE else ""
    return median(ratios), [round(low, 4), round(high, 4)], note


def _lean_targets(results: dict[str, Any]) -> list[Row]:
    """The product's client against a lean one, on the same server.

    Where the run has paired blocks of custom's independent clients (stop 25 on), issue 8's
    client-CPU limit reads ChatClient against the independent blocking client: frames by
    hand, none of our code, so leaner than the lean client (our codec) and what anyone
    checking the limit would write. Its p50 is then issue 8's independent target (against
    the asyncio client), so the lean client's p50 target would ask the same question twice.

    Else from the lean row's ``pairs`` when it has them (blocks of the two clients alternating
    in one process: the figure is the median of the per-pair ratios), else (a results.json
    from before pairs) the send row of the latency step against the lean step's row."""
    independent = independent_row(results, LEAN_TRANSPORT)
    by_hand: list[Row] = (independent or {}).get("pairs") or []
    if by_hand and all("independent_cpu_us" in p and "bare_cpu_us" in p for p in by_hand):
        assert independent is not None
        return [
            _paired_target(
                INDEPENDENT_CPU_NAME,
                independent,
                by_hand,
                "cpu_us",
                LEAN_CPU_LIMIT,
                "lower",
                "client CPU per send",
                "independent",
                str(independent.get("client_impl") or "the independent blocking client"),
                (
                    str(independent.get("bare_impl") or "the independent asyncio client"),
                    "the event loop's share",
                ),
            )
        ]
    lean = lean_row(results)
    pairs: list[Row] = (lean or {}).get("pairs") or []
    if pairs:
        return _lean_targets_paired(lean, pairs)
    mine = round_trip_row(results, LEAN_TRANSPORT)
    if mine is None and lean is None:
        return []
    return [
        _target(
            LEAN_P50_NAME,
            ratio(p50(mine), p50(lean)),
            LEAN_P50_TOLERANCE,
            "within",
            f"bench client {fmt_us(p50(mine))} µs vs lean blocking client "
            f"{fmt_us(p50(lean))} µs, same server, same run",
            disturbed(mine, lean),
            ratio_interval(mine, lean, "p50_us"),
            LEAN_SOURCE,
        ),
        _target(
            LEAN_CPU_NAME,
            ratio(_client_cpu(mine), _client_cpu(lean)),
            LEAN_CPU_LIMIT,
            "lower",
            f"ChatClient {fmt_us(_client_cpu(mine))} µs vs lean blocking client "
            f"{fmt_us(_client_cpu(lean))} µs of client CPU per send",
            disturbed(mine, lean),
            ratio_interval(mine, lean, "client_cpu_us_per_op"),
            LEAN_SOURCE,
        ),
    ]


#: The lean step's clients, in the targets' words (bench/refs/lean_custom.py).
LEAN_WORDS = "lean blocking client"
LEAN_BARE = (
    "the bare asyncio client (the same codec, a future per call, no ChatClient)",
    "the event loop's share",
)


def _paired_target(
    name: str,
    row: Row | None,
    pairs: list[Row],
    figure: str,
    limit: float,
    better: str,
    what: str,
    ref: str,
    ref_words: str,
    bare: tuple[str, str],
    beside: str = "bare",
    source: str = LEAN_SOURCE,
    servers: str = "same server",
    extra: str = "",
) -> Row:
    """A target read from a paired row's block pairs (every round's): the median of the
    per-pair ratios ChatClient ÷ ``ref`` of ``figure``, with its interval over the pairs;
    ``bare``: the words of the third client in the pairs (named ``beside`` in them) and what
    ``ref``'s reading against it is the share of."""
    rounds = len({p.get("round", 0) for p in pairs})
    where = (
        f"paired blocks in one process, {len(pairs)} pairs "
        f"({rounds} round{'s' if rounds != 1 else ''}), {servers}"
    )
    value, ci, note = paired_ratio(pairs, figure, "chat", ref)
    chat = median(p.get(f"chat_{figure}") for p in pairs)
    mine = median(p.get(f"{ref}_{figure}") for p in pairs)
    return _target(
        name,
        value,
        limit,
        better,
        f"ChatClient {fmt_us(chat)} µs vs {ref_words} {fmt_us(mine)} µs "
        f"of {what} (medians over blocks); median of the per-pair ratios, "
        f"{where}{note}{_bare_share(pairs, figure, ref, *bare, beside=beside)}{extra}",
        disturbed(row),
        ci,
        source,
    )


def _lean_targets_paired(lean: Row | None, pairs: list[Row]) -> list[Row]:
    """The two lean-client targets from the block pairs of the lean step (every round's)."""
    return [
        _paired_target(
            name, lean, pairs, figure, limit, better, what, "lean", LEAN_WORDS, LEAN_BARE
        )
        for name, figure, limit, better, what in (
            (LEAN_P50_NAME, "p50_us", LEAN_P50_TOLERANCE, "within", "send p50"),
            (LEAN_CPU_NAME, "cpu_us", LEAN_CPU_LIMIT, "lower", "client CPU per send"),
        )
    ]


def _independent_targets(results: dict[str, Any]) -> list[Row]:
    """Issue 8's p50 target of every transport with an independent client
    (bench/refs/independent.py): each one the run has a row of, and each the run's plan
    measured (``meta.plan.independent`` > 0) among the transports it asked for (its row
    missing: n/a). From the row's ``pairs``, as the lean client's target."""
    meta = results.get("meta", {})
    asked = meta.get("transports")
    planned = [
        t
        for t in INDEPENDENT_TRANSPORTS
        if (meta.get("plan") or {}).get("independent") and (asked is None or t in asked)
    ]
    have = [
        r["transport"]
        for r in results.get("latency", [])
        if r.get("client") == INDEPENDENT_CLIENT and r["op"] == "send"
    ]
    out = []
    for transport in sorted({*planned, *have}, key=lambda t: transport_rank(t, results)):
        row = independent_row(results, transport)
        pairs: list[Row] = (row or {}).get("pairs") or []
        name = independent_p50_name(transport)
        if row is None or not pairs:
            out.append(
                _target(
                    name,
                    None,
                    LEAN_P50_TOLERANCE,
                    "within",
                    "no paired blocks of an independent client in this run",
                    source=LEAN_SOURCE,
                )
            )
            continue
        words = str(row.get("client_impl") or "the independent client")
        bare_words = row.get("bare_impl")
        if all("bare_p50_us" in p for p in pairs):
            # ChatClient is an asyncio client: read against the independent asyncio client
            # (bench/refs/independent_aio.py), with the blocking one that times the ladder
            # beside: what any client pays for an event loop is not ChatClient's to shed
            name, ref, beside = independent_p50_name(transport), "bare", "independent"
            ref_words = str(bare_words or "the independent asyncio client")
            third = (words, "what any asyncio client pays over it: the event loop's share")
        else:  # results from before stop 24: against the blocking client
            name, ref, beside = independent_p50_name(transport, False), "independent", "bare"
            ref_words = words
            third = (str(bare_words or "the bare asyncio stub"), "the asyncio layer's share")
        out.append(
            _paired_target(
                name,
                row,
                pairs,
                "p50_us",
                LEAN_P50_TOLERANCE,
                "within",
                "send p50",
                ref,
                ref_words,
                third,
                beside=beside,
            )
        )
    return out


def _bare_share(
    pairs: list[Row], figure: str, ref: str, who: str, share: str, beside: str = "bare"
) -> str:
    """The third client's reading beside the pair's (when the pairs have it).

    ``beside="bare"`` (``ref`` a blocking client): how much of ChatClient's ratio any
    ``await``-per-call client pays (``share``: to what), and how much is ChatClient's own.
    ``beside="independent"`` (``ref`` the asyncio client): what the asyncio client pays over
    the blocking one ``who`` (``share``), which ChatClient's target leaves out."""
    if beside == "independent":
        over, _, _ = paired_ratio(pairs, figure, ref, beside)
        if over is None:
            return ""
        blocking = median(p.get(f"{beside}_{figure}") for p in pairs)
        return (
            f"; {who} (blocking, which times the ladder) reads {fmt_us(blocking)} µs, the "
            f"asyncio client {over:.2f}x it ({share})"
        )
    bare, _, _ = paired_ratio(pairs, figure, "bare", ref)
    ours, _, _ = paired_ratio(pairs, figure, "chat", "bare")
    if bare is None or ours is None:
        return ""
    return (
        f"; {who} reads {bare:.2f}x the {ref} one ({share}), ChatClient {ours:.2f}x the bare "
        "one (its own)"
    )


#: The durable-share target's name (issue 10 item 1).
SQLITE_NAME = f"{BASE} SQLite send saturation >= {SQLITE_SHARE:g}x the memory store's"


def _durable_target(results: dict[str, Any], base: Row | None, b_rate: float | None) -> Row:
    """SQLite ÷ memory send saturation on custom. From the paired blocks of the durable
    scene where the run has them (bench/durable_scene.py: both servers at once, the median
    of the per-pair ratios with its interval), else (runs from before it) from the two
    stores' load steps, measured minutes apart."""
    pairs: list[Row] = [
        p for p in results.get("durable") or [] if p.get("memory_per_s") and p.get("sqlite_per_s")
    ]
    if pairs:
        value, ci, note = paired_ratio(pairs, "per_s", "sqlite", "memory")
        noise = disturbed(
            *(
                {f: p.get(f"{store}_{f}") for f in ("other_vcpus", "steal_vcpus")}
                for p in pairs
                for store in ("memory", "sqlite")
            )
        )
        return _target(
            SQLITE_NAME,
            value,
            SQLITE_SHARE,
            "higher",
            f"{BASE} {fmt_rate(median(p['sqlite_per_s'] for p in pairs))}/s on the SQLite "
            f"file store vs {fmt_rate(median(p['memory_per_s'] for p in pairs))}/s in memory "
            "(medians over blocks; server CPU per send "
            f"{fmt_us(median(p.get('sqlite_cpu_us') for p in pairs))} vs "
            f"{fmt_us(median(p.get('memory_cpu_us') for p in pairs))} µs); median of the "
            f"per-pair ratios, {len(pairs)} pairs of closed-loop blocks of the lean frame "
            f"generator, both servers running at once on one vCPU{note}; group commit",
            noise,
            ci,
            SQLITE_SOURCE,
        )
    disk = saturation(results, BASE, "sqlite")
    d_rate = None if disk is None else disk["achieved_per_s"]
    return _target(
        SQLITE_NAME,
        ratio(d_rate, b_rate),
        SQLITE_SHARE,
        "higher",
        f"{BASE} {fmt_rate(d_rate)}/s on the SQLite file store ({generator_of(disk)}) vs "
        f"{fmt_rate(b_rate)}/s in memory ({generator_of(base)}) (highest achieved rate of a "
        "load step, a lean generator's where the run has them; group commit)",
        disturbed(disk, base),
        source=SQLITE_SOURCE,
    )


def evaluate_targets(results: dict[str, Any]) -> list[Row]:
    """Every target, each PASS / MISS from this run's numbers (n/a if a figure is missing)."""
    out = _floor_targets(results) + _lean_targets(results) + _independent_targets(results)
    base, grpc = saturation(results, BASE), saturation(results, GRPC)
    b_rate = None if base is None else base["achieved_per_s"]
    g_rate = None if grpc is None else grpc["achieved_per_s"]
    out.append(
        _target(
            f"{BASE} send saturation >= 3x {GRPC}",
            ratio(b_rate, g_rate),
            3.0,
            "higher",
            f"{BASE} {fmt_rate(b_rate)}/s ({generator_of(base)}) vs {GRPC} "
            f"{fmt_rate(g_rate)}/s ({generator_of(grpc)}) (highest achieved rate of a load "
            "step, memory store; a lean generator's steps where the run has them)",
            disturbed(base, grpc),
            source=BASE_SOURCE,
        )
    )
    out.append(_durable_target(results, base, b_rate))
    b_row, g_row = steady_send_bytes(results, BASE), steady_send_bytes(results, GRPC)
    b_bytes, g_bytes = total_bytes(b_row), total_bytes(g_row)
    body = None if b_row is None else b_row.get("body_bytes")
    out.append(
        _target(
            f"{BASE} steady send bytes <= 1/4 of {GRPC}",
            ratio(b_bytes, g_bytes),
            0.25,
            "lower",
            f"{BASE} {b_bytes if b_bytes is not None else '—'} B vs {GRPC} "
            f"{g_bytes if g_bytes is not None else '—'} B per round trip "
            f"(both directions, the steady call, {body if body is not None else '—'} B body)",
            source=BASE_SOURCE,
        )
    )
    return out


__all__ = [
    "LEAN_CPU_LIMIT",
    "LEAN_P50_TOLERANCE",
    "OPS",
    "SIZE_KINDS",
    "SQLITE_NAME",
    "UNSETTLED",
    "client_saturation",
    "disturbed",
    "evaluate_targets",
    "find_latency",
    "fmt_rate",
    "fmt_us",
    "generator_of",
    "independent_p50_name",
    "independent_row",
    "is_reference",
    "judge",
    "label",
    "lean_row",
    "order",
    "p50",
    "pair_ratios",
    "paired_ratio",
    "references",
    "round_trip_row",
    "saturation",
    "standard_size_rows",
    "steady_send_bytes",
    "total_bytes",
    "transport_rank",
]
