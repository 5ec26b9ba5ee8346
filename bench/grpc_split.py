"""grpc_split: what the gRPC unary contract's floor is made of, one change at a time (issue 10).

The bench reads the contract's floor as the bare generated ``grpc.aio`` stub (bench/refs/
independent_aio.py ``AioUnary``: a SendRequest, the ``wirechat-session`` metadata, a 10 s
deadline) against bench/refs/null_chat.py, over grpc_echo's own client against grpc_echo (raw
bytes, no metadata, no deadline). This probe walks from the one to the other in steps, each
variant a client (and where it must, a server) that differs from a neighbour in one thing:

====================  ==========================================================================
variant               client -> server
====================  ==========================================================================
echo                  grpc_echo's own client (bench/refs/clients.py) -> grpc_echo: the baseline
echo_again            the same raw call on a channel of its own -> grpc_echo (control: ~1.00)
echo_t                ... with ``timeout=10`` (grpc-core: a deadline, ``grpc-timeout`` header)
echo_m                ... with the metadata tuple (``wirechat-session``, a 22-character token)
echo_mt               ... with both
echo_reg              ... with neither, on a registered call handle (what generated stubs use)
split_echo            the raw call -> the split server's Echo (another process: control)
split_lookup_mt       metadata and deadline -> split's EchoLookup (reads the token from
                      ``invocation_metadata()`` and checks it, as null_chat does; raw bytes)
proto                 the generated stub's Send (SendRequest/SendReply, registered handle), no
                      metadata, no deadline -> split's Send (null_chat's reply, no token check)
proto_mt              ... with metadata and deadline (the floor's client) -> split's Send
proto_mt_check        ... -> split's checked Send (null_chat's own handler, in split's process)
floor                 AioUnary -> null_chat: the floor exactly as the bench runs it
ours                  AioUnary -> ``wirechat server`` (grpc, memory store): our server's share
====================  ==========================================================================

How. The servers run pinned to one vCPU, this client to the other (as the bench places them).
Each round runs one block of every variant, in an order drawn afresh each round (seeded), one
call in flight, a 32 B body: ``lead_in`` untimed calls, then ``block`` timed ones. Per round and
variant: the block's p50, and the CPU per call of this process (``time.process_time``, all its
threads: grpc's poller included) and of the variant's server process (bench.endpoints
``process_cpu_s``; an idle grpc server burns next to nothing). A variant's ratio is the median
over rounds of its p50 ÷ echo's p50 in the same round, with the distribution-free 95 % interval
of that median (bench.stats ``median_interval``); ``steps`` gives the same for the neighbouring
pairs that isolate one cause each (STEPS). Bounded: ``rounds`` rounds or ``budget`` seconds,
whichever ends first, every call under a timeout.

``python -m bench.grpc_split [--rounds N] [--block N] [--variants a,b] [--json FILE]``; the
split server alone: ``python -m bench.grpc_split serve`` (announces ``listening:`` and
``ready:`` on stderr like the reference servers).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import grpc

from bench.refs import GRPC_ECHO_METHOD
from bench.refs.null_chat import SESSION_KEY, NullChat
from transports.grpc._generated import chat_pb2 as pb

log = logging.getLogger("bench.grpc_split")

BODY = "x" * 32
RECIPIENT = "split-r"
#: The deadline every timed variant sets: the product's client's and AioUnary's (10 s).
TIMEOUT_S = 10.0
#: Seconds any one call may take before the probe gives up (a hung server).
CALL_LIMIT_S = 30.0
#: Seconds the servers are left alone after they start (see _start_servers).
SETTLE_S = 1.0
#: Paths the split server serves (besides chat.proto's Signup and Send).
LOOKUP_METHOD = "/wirechat.bench.Echo/EchoLookup"
SEND_METHOD = "/wirechat.v1.Chat/Send"
CHECKED_METHOD = "/wirechat.split.Chat/Send"


@dataclass(frozen=True)
class Variant:
    server: str  # "echo", "split", "null_chat" or "ours"
    path: str = GRPC_ECHO_METHOD
    proto: bool = False  # SendRequest/SendReply through protobuf, else raw bytes
    metadata: bool = False
    timeout: bool = False
    registered: bool = False  # a registered call handle (generated stubs' _registered_method)
    bench: str = ""  # "echo": the bench's GrpcEchoClient; "unary": the bench's AioUnary


VARIANTS: dict[str, Variant] = {
    "echo": Variant("echo", bench="echo"),
    "echo_again": Variant("echo"),
    "echo_t": Variant("echo", timeout=True),
    "echo_m": Variant("echo", metadata=True),
    "echo_mt": Variant("echo", metadata=True, timeout=True),
    "echo_reg": Variant("echo", registered=True),
    "split_echo": Variant("split"),
    "split_lookup_mt": Variant("split", LOOKUP_METHOD, metadata=True, timeout=True),
    "proto": Variant("split", SEND_METHOD, proto=True, registered=True),
    "proto_mt": Variant("split", SEND_METHOD, True, True, True, True),
    "proto_mt_check": Variant("split", CHECKED_METHOD, True, True, True, True),
    "floor": Variant("null_chat", bench="unary"),
    "ours": Variant("ours", bench="unary"),
}
BASELINE = "echo"

#: (name, variant, against): neighbours that differ in one thing each.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("control: own channel", "echo_again", "echo"),
    ("control: other process", "split_echo", "echo"),
    ("client deadline (+server deadline)", "echo_t", "echo_again"),
    ("client metadata (+HPACK, server receives it)", "echo_m", "echo_again"),
    ("metadata and deadline", "echo_mt", "echo_again"),
    ("registered call handle", "echo_reg", "echo_again"),
    ("server reads invocation_metadata + token check", "split_lookup_mt", "echo_mt"),
    ("protobuf both ends, method path", "proto", "echo_reg"),
    ("metadata and deadline on proto", "proto_mt", "proto"),
    ("server token check on proto", "proto_mt_check", "proto_mt"),
    ("control: null_chat process", "floor", "proto_mt_check"),
    ("our server over the floor", "ours", "floor"),
)


# -- the split server ---------------------------------------------------------------------
async def start_split(host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """The split server: chat.proto's Signup and Send (no token check), the checked Send under
    CHECKED_METHOD (null_chat's handler), and raw Echo and EchoLookup."""
    chat = NullChat()
    ids = itertools.count(1)

    async def send(request: pb.SendRequest, context: grpc.aio.ServicerContext) -> pb.SendReply:
        return pb.SendReply(message_id=next(ids), sent_at_ms=time.time_ns() // 1_000_000)

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def lookup(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        token = next((v for k, v in context.invocation_metadata() if k == SESSION_KEY), None)
        if token not in chat.tokens:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no session")
        return request

    proto = (pb.SendRequest.FromString, pb.SendReply.SerializeToString)
    signup = (pb.SignupRequest.FromString, pb.LoginReply.SerializeToString)
    unary = grpc.unary_unary_rpc_method_handler
    handlers = {
        "wirechat.v1.Chat": {"Signup": unary(chat.signup, *signup), "Send": unary(send, *proto)},
        "wirechat.split.Chat": {"Send": unary(chat.send, *proto)},
        "wirechat.bench.Echo": {"Echo": unary(echo), "EchoLookup": unary(lookup)},
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        tuple(grpc.method_handlers_generic_handler(s, m) for s, m in handlers.items())
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound


async def _serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server, bound = await start_split(host, port)
    log.info("listening: grpc_split %s:%d", host, bound)
    log.info("ready:")
    await stop.wait()
    await server.stop(None)


# -- the clients ----------------------------------------------------------------------------
Send = Callable[[], Awaitable[Any]]


async def _signup(address: tuple[str, int], name: str) -> str:
    async with grpc.aio.insecure_channel(f"{address[0]}:{address[1]}") as channel:
        signup = channel.unary_unary(
            "/wirechat.v1.Chat/Signup",
            request_serializer=pb.SignupRequest.SerializeToString,
            response_deserializer=pb.LoginReply.FromString,
        )
        reply = await signup(pb.SignupRequest(username=name, password="correct horse 1"))
        return str(reply.session_token)


async def open_variant(
    variant: Variant, address: tuple[str, int], token: str, closers: list[Any]
) -> Send:
    """A connected client of ``variant`` (on ``address``) as one send with no arguments."""
    if variant.bench == "echo":
        from bench.refs.clients import GrpcEchoClient

        client = GrpcEchoClient(address)
        await client.connect()
        closers.append(client)
        payload = BODY.encode()
        return lambda: client.echo(payload)
    if variant.bench == "unary":
        from bench.refs.independent_aio import AioUnary

        unary = AioUnary()
        await unary.open(address, f"split-{os.getpid()}-{len(closers)}", RECIPIENT, BODY)
        closers.append(unary)
        return unary.send
    options = (("grpc.use_local_subchannel_pool", 1),)  # a connection of its own
    channel = grpc.aio.insecure_channel(f"{address[0]}:{address[1]}", options=options)
    closers.append(channel)
    await channel.channel_ready()
    codec: dict[str, Any] = {}
    request: Any = BODY.encode()
    if variant.proto:
        codec = {
            "request_serializer": pb.SendRequest.SerializeToString,
            "response_deserializer": pb.SendReply.FromString,
        }
        request = pb.SendRequest(recipients=[RECIPIENT], body=BODY)
    call = channel.unary_unary(variant.path, _registered_method=variant.registered, **codec)
    kwargs: dict[str, Any] = {}
    if variant.metadata:
        kwargs["metadata"] = ((SESSION_KEY, token),)
    if variant.timeout:
        kwargs["timeout"] = TIMEOUT_S
    return lambda: call(request, **kwargs)


async def _close(closers: list[Any]) -> None:
    for item in closers:
        try:
            await item.close()
        except Exception as exc:  # a close that fails changes no figure
            log.debug("close failed: %r", exc)


async def _patient(call: Callable[[], Awaitable[Any]], tries: int = 10) -> Any:
    """``call()``, again (up to ``tries`` times, 0.2 s apart) while our server sheds it: an
    untimed setup call on a machine busy enough that the server's loop ran late."""
    for _ in range(tries - 1):
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            await asyncio.sleep(0.2)
    return await call()


# -- measuring ------------------------------------------------------------------------------
def _cpu_of(pid: int) -> float:
    from bench.endpoints import process_cpu_s

    return process_cpu_s(pid)


async def block(send: Send, n: int, lead_in: int, server_pid: int) -> dict[str, float]:
    """``lead_in`` untimed sends, then ``n`` timed: p50 (µs), client and server CPU µs/call."""
    for _ in range(lead_in):
        await send()
    times = []
    clock = time.perf_counter_ns
    s0, c0 = _cpu_of(server_pid), time.process_time()
    for _ in range(n):
        t0 = clock()
        await send()
        times.append(clock() - t0)
    c1, s1 = time.process_time(), _cpu_of(server_pid)
    return {
        "p50_us": statistics.median(times) / 1000,
        "client_cpu_us": (c1 - c0) * 1e6 / n,
        "server_cpu_us": (s1 - s0) * 1e6 / n,
    }


def _interval(values: list[float]) -> list[float] | None:
    from bench.stats import median_interval

    found = median_interval(values)
    return None if found is None else [round(found[0], 4), round(found[1], 4)]


def _contrast(rounds: list[dict[str, dict[str, float]]], of: str, to: str) -> dict[str, Any]:
    """Median over rounds of ``of``'s p50 ÷ ``to``'s, its interval, and the median per-round
    CPU differences (µs/call)."""
    both = [r for r in rounds if of in r and to in r]
    ratios = [r[of]["p50_us"] / r[to]["p50_us"] for r in both]
    out: dict[str, Any] = {"of": of, "to": to, "rounds": len(both)}
    if not ratios:
        return out
    out["p50_ratio"] = round(statistics.median(ratios), 4)
    out["interval"] = _interval(ratios)
    for key in ("client_cpu_us", "server_cpu_us"):
        diffs = [r[of][key] - r[to][key] for r in both]
        out[f"{key}_delta"] = round(statistics.median(diffs), 2)
        out[f"{key}_delta_interval"] = _interval(diffs)
    return out


def summarise(rounds: list[dict[str, dict[str, float]]], names: list[str]) -> dict[str, Any]:
    """Per variant: medians over rounds of p50 and CPU, and the paired ratio to the baseline;
    ``steps``: each STEPS pair both of whose variants ran."""
    variants = {}
    for name in names:
        mine = [r[name] for r in rounds if name in r]
        row: dict[str, Any] = {
            key: round(statistics.median(b[key] for b in mine), 2)
            for key in ("p50_us", "client_cpu_us", "server_cpu_us")
        }
        if name != BASELINE and BASELINE in names:
            found = _contrast(rounds, name, BASELINE)
            row["ratio_to_echo"] = found.get("p50_ratio")
            row["interval"] = found.get("interval")
        variants[name] = row
    steps = [
        {"step": step, **_contrast(rounds, of, to)}
        for step, of, to in STEPS
        if of in names and to in names
    ]
    return {"variants": variants, "steps": steps}


@dataclass(frozen=True)
class Plan:
    """How much to measure: ``rounds`` rounds of a ``block`` of timed calls per variant (each
    after ``lead_in`` untimed ones), every variant first warmed by ``warmup`` calls; stop
    after the round that passes ``budget`` seconds."""

    rounds: int = 40
    block: int = 200
    lead_in: int = 20
    warmup: int = 200
    budget: float = 300.0
    seed: str = "grpc-split"


async def measure(
    servers: dict[str, tuple[tuple[str, int], int]], names: list[str], plan: Plan
) -> dict[str, Any]:
    """Run the rounds against ``servers`` (kind -> (address, pid)); returns the summary with
    every round's figures (``rounds``)."""
    closers: list[Any] = []
    try:
        split = servers.get("split")
        token = await _patient(lambda: _signup(split[0], "split-t")) if split else "t" * 22
        for kind in {VARIANTS[n].server for n in names if VARIANTS[n].bench == "unary"}:
            from bench.refs.independent_aio import AioUnary

            owner = AioUnary()  # the recipient exists (a chat server sends to known users)
            await _patient(partial(owner.open, servers[kind][0], RECIPIENT, RECIPIENT, BODY))
            await owner.close()
        sends = {}
        for name in names:
            address, _ = servers[VARIANTS[name].server]
            variant = VARIANTS[name]
            sends[name] = await _patient(partial(open_variant, variant, address, token, closers))
        for name in names:  # each warms up once, before any block
            for _ in range(plan.warmup):
                await _patient(sends[name])
        rng = random.Random(plan.seed)
        done: list[dict[str, dict[str, float]]] = []
        dropped = 0
        deadline = time.monotonic() + plan.budget
        for _ in range(plan.rounds):
            order = list(names)
            rng.shuffle(order)
            figures = {}
            try:
                for name in order:
                    pid = servers[VARIANTS[name].server][1]
                    figures[name] = await block(sends[name], plan.block, plan.lead_in, pid)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                # our server shed a send: its loop ran behind (a busy machine); the round
                # is dropped, not timed with a refusal in it
                log.warning("round dropped: %s refused (%s)", name, exc.details())
                dropped += 1
            else:
                done.append(figures)
            if time.monotonic() > deadline or dropped > plan.rounds // 2:
                break
    finally:
        await _close(closers)
    return {**summarise(done, names), "rounds": done, "dropped_rounds": dropped}


# -- processes --------------------------------------------------------------------------------
def _start_servers(kinds: set[str], cpu: int | None) -> dict[str, Any]:
    from bench.procs import RefServer
    from wirechat.launch import ChildProcess, ServerProcess

    started: dict[str, Any] = {}
    try:
        for kind in sorted(kinds):
            if kind == "echo":
                started[kind] = RefServer("grpc_echo", cpu=cpu).start()
            elif kind == "null_chat":
                started[kind] = RefServer("null_chat", cpu=cpu).start()
            elif kind == "split":
                argv = [sys.executable, "-m", "bench.grpc_split", "serve"]
                started[kind] = ChildProcess(argv, cpu=cpu, label="grpc_split").start()
            else:
                started[kind] = ServerProcess(["grpc"], ":memory:", cpu=cpu).start()
    except BaseException:
        for proc in started.values():
            proc.stop()
        raise
    # The servers started at once on one vCPU: our server's loop ran late meanwhile, and it
    # sheds work while its load meter remembers that (transports/grpc/_limits.py).
    time.sleep(SETTLE_S)
    return started


def _address(kind: str, proc: Any) -> tuple[str, int]:
    key = {"echo": "grpc_echo", "null_chat": "null_chat", "split": "grpc_split"}.get(kind, "grpc")
    host, port = proc.addresses[key]
    return str(host), int(port)


def run(names: list[str], plan: Plan) -> dict[str, Any]:
    """Start the servers the variants ``names`` need, measure, stop them (by pid, only
    ours)."""
    from bench.procs import choose_placement

    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if BASELINE not in names:
        names = [BASELINE, *names]
    placement, _ = choose_placement()
    started = _start_servers({VARIANTS[n].server for n in names}, placement.server_cpu)
    try:
        if placement.client_cpu is not None:
            os.sched_setaffinity(0, {placement.client_cpu})  # before grpc starts its threads
        servers = {k: (_address(k, p), p.pid) for k, p in started.items()}
        log.info("servers: %s", {k: pid for k, (_, pid) in servers.items()})
        import uvloop

        limit = plan.budget + CALL_LIMIT_S * 4
        result = uvloop.run(asyncio.wait_for(measure(servers, names, plan), limit))
    finally:
        for proc in started.values():
            proc.stop()
    result["config"] = {
        **asdict(plan),
        "body_bytes": len(BODY),
        "placement": placement.label,
        "grpcio": grpc.__version__,
    }
    return result


def _delta(step: dict[str, Any], key: str) -> str:
    span = step.get(f"{key}_delta_interval") or [float("nan")] * 2
    return f"{step[f'{key}_delta']:+.1f} [{span[0]:+.1f}, {span[1]:+.1f}]"


def render(result: dict[str, Any]) -> str:
    """The summary as two Markdown tables (variants, then steps)."""
    lines = [
        f"rounds: {len(result['rounds'])} ({result.get('dropped_rounds', 0)} dropped), "
        f"block {result['config']['block']} calls, "
        f"{result['config']['placement']}, grpcio {result['config']['grpcio']}",
        "",
        "| variant | p50 µs | ratio to echo [95 %] | client CPU µs/call | server CPU µs/call |",
        "|---|---:|---|---:|---:|",
    ]
    for name, row in result["variants"].items():
        span = row.get("interval")
        ratio = "—" if row.get("ratio_to_echo") is None else f"{row['ratio_to_echo']:.3f}"
        if span:
            ratio += f" [{span[0]:.3f}, {span[1]:.3f}]"
        lines.append(
            f"| {name} | {row['p50_us']:.1f} | {ratio} | {row['client_cpu_us']:.1f} "
            f"| {row['server_cpu_us']:.1f} |"
        )
    lines += [
        "",
        "| step | of / to | p50 ratio [95 %] | Δ client CPU µs [95 %] | Δ server CPU µs [95 %] |",
        "|---|---|---|---:|---:|",
    ]
    for step in result["steps"]:
        if "p50_ratio" not in step:
            continue
        span = step.get("interval") or [float("nan")] * 2
        cpu = [_delta(step, key) for key in ("client_cpu_us", "server_cpu_us")]
        lines.append(
            f"| {step['step']} | {step['of']} / {step['to']} | {step['p50_ratio']:.3f} "
            f"[{span[0]:.3f}, {span[1]:.3f}] | {cpu[0]} | {cpu[1]} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.grpc_split", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("mode", nargs="?", choices=("probe", "serve"), default="probe")
    plan = Plan()
    parser.add_argument("--rounds", type=int, default=plan.rounds, help="rounds, at most")
    parser.add_argument("--block", type=int, default=plan.block, help="timed calls a block")
    parser.add_argument("--lead-in", type=int, default=plan.lead_in, help="untimed, a block")
    parser.add_argument("--warmup", type=int, default=plan.warmup, help="untimed, a variant")
    parser.add_argument("--budget", type=float, default=plan.budget, help="seconds, at most")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--seed", default=plan.seed)
    parser.add_argument("--json", help="write the whole result here")
    parser.add_argument("--host", default="127.0.0.1", help="serve: the address to bind")
    parser.add_argument("--port", type=int, default=0, help="serve: the port (0: any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.mode == "serve":
        import uvloop

        uvloop.run(_serve(args.host, args.port))
        return 0
    plan = Plan(args.rounds, args.block, args.lead_in, args.warmup, args.budget, args.seed)
    result = run([n for n in args.variants.split(",") if n], plan)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
