"""Funding benchmark: deposits per second from the bank's event to persisted trade intents.

Two chains of three hops run one after the other, on a RabbitMQ vhost and a PostgreSQL
database that the benchmark creates and removes itself (127.0.0.1 only):

- **real**: the services as processes (ledger, pie and window, plus market for the prices
  the pie needs). A deposit event goes ledger (books it, emits ``ledger.cash.changed``) ->
  pie (auto-invests it, emits ``pie.intents.submitted``) -> window (persists the intents).
- **bare**: the floor of this machine. Three processes, each a plain aio-pika + asyncpg
  consumer: consume from a durable quorum queue (prefetch 64, as the services), one
  transaction with an inbox row (``ON CONFLICT DO NOTHING``) and one effect row, publish to
  the next hop with a publisher confirm (persistent), ack.

Deposits are published as the bank would (persistent, confirmed, up to ``--in-flight`` at
once; a burst unless ``--rate`` paces them). Latency is from just before a deposit's publish
(this process's wall clock) to the timestamp of its last hop's row (the window's
``created_at``, the bare hop's ``now()``: both taken as that transaction begins, on the same
host clock). Throughput is N / (last row persisted - first publish).

How a deposit is matched to its intents (the pie may fold several deposits of one account
into one batch, since a cash change older than one already applied is skipped): per
account, deposits are taken in the ledger's booking order and window batches in
``created_at`` order; a deposit is done when the window holds intents for the account
summing to at least the account's deposits booked up to and including it. The bare chain
carries the deposit id as correlation id, so its matching is exact.

    .venv/bin/python bench/funding.py [--deposits N] [--accounts A] [--rate R] [--only real|bare]

It is a separate command, never part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aio_pika  # noqa: E402
import asyncpg  # noqa: E402

from bench_cpu import cpu_seconds  # noqa: E402  (beside this file)
from shared.contracts import DepositReceived, OpenAccount, PieSpec, SetPie, SetPrices  # noqa: E402
from shared.db import drop_database, ensure_database  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.support import PG_BASE, RABBIT_HOST, create_vhost, delete_vhost, unique_name  # noqa: E402

LOCAL = "127.0.0.1"
HOPS = 3
PREFETCH = Settings().prefetch  # the services' prefetch (64)
POOL_SIZE = 10  # the services' pool size (shared.db.create_pool)
BARE_EXCHANGE = "bench.bare"
DEPOSIT = Decimal("100.00")
PRICES = {"VTI": "250.00", "BND": "72.50"}
PIE = PieSpec.model_validate({"name": "Bench 60/40", "slices": [{"symbol": "VTI", "target": 60},
                                                                {"symbol": "BND", "target": 40}]})
REAL_SERVICES = ["ledger", "pie", "window", "market"]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- measurements


@dataclass
class Result:
    path: str
    n: int
    sent: dict[str, float]  # message id -> wall time just before its publish
    done: dict[str, float]  # message id -> wall time its last hop's row was persisted
    first_hop: dict[str, float] = field(default_factory=dict)  # message id -> first hop's row time
    notes: list[str] = field(default_factory=list)
    cpu: Counter[str] = field(default_factory=Counter)  # CPU seconds by role, first publish to done
    wall: float = 0.0  # seconds the CPU figures cover

    @property
    def elapsed(self) -> float:
        return max(self.done.values()) - min(self.sent.values())

    @property
    def rate(self) -> float:
        return len(self.done) / self.elapsed if self.elapsed > 0 else 0.0

    def latencies_ms(self, ends: dict[str, float]) -> list[float]:
        return sorted((ends[k] - self.sent[k]) * 1000 for k in ends if k in self.sent)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


async def publish_all(items: list[tuple[str, Callable[[], Awaitable[object]]]], *, in_flight: int,
                      rate: float | None) -> tuple[dict[str, float], float]:
    """Run every publish (each awaits its confirm), at most ``in_flight`` at once, paced at
    ``rate`` per second when given; return each message id's start time and how long the
    whole publishing took (seconds)."""
    sent: dict[str, float] = {}
    gate = asyncio.Semaphore(in_flight)

    async def one(key: str, publish: Callable[[], Awaitable[object]]) -> None:
        async with gate:
            sent[key] = time.time()
            await publish()

    start = time.monotonic()
    tasks = []
    for i, (key, publish) in enumerate(items):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(key, publish)))
    await asyncio.gather(*tasks)
    return sent, time.monotonic() - start


async def wait_until(check: Callable[[], Awaitable[tuple[bool, str]]], *, timeout: float, what: str) -> None:
    """Poll ``check`` (done?, progress text) until done; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    shown = time.monotonic()
    while True:
        ok, progress = await check()
        if ok:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f}s ({progress})")
        if time.monotonic() - shown > 5:
            say(f"  {what}: {progress}")
            shown = time.monotonic()
        await asyncio.sleep(0.1)


def deposit_event(account_id: str) -> DepositReceived:
    return DepositReceived(deposit_id=uuid.uuid4(), account_id=account_id, amount=DEPOSIT, currency="USD",
                           received_at=datetime.now(UTC))


# ---------------------------------------------------------------- the bare chain


def hop_queue(k: int) -> str:
    return f"bench.hop{k}"


def hop_schema(k: int) -> str:
    return f"bench_hop{k}"


async def run_hop(k: int, rabbitmq_url: str, database_url: str, lifetime: float) -> None:
    """One hop of the bare chain, in its own process, until SIGTERM or ``lifetime`` seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=POOL_SIZE,
                                     server_settings={"search_path": hop_schema(k)})
    connection = await aio_pika.connect(rabbitmq_url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=PREFETCH)
    exchange = await channel.get_exchange(BARE_EXCHANGE, ensure=False)
    queue = await channel.get_queue(hop_queue(k), ensure=False)
    last = k == HOPS

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            payload = json.loads(message.body)
            async with pool.acquire() as conn, conn.transaction():
                fresh = await conn.fetchval(
                    "INSERT INTO inbox (message_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
                    message.message_id)
                if fresh:
                    await conn.execute("INSERT INTO effect (message_id, correlation_id, account_id, body) "
                                       "VALUES ($1, $2, $3, $4)", message.message_id, message.correlation_id,
                                       payload["account_id"], message.body)
            if not last:  # also on a duplicate: the earlier try may have died before its publish
                await exchange.publish(
                    aio_pika.Message(message.body, message_id=f"{message.correlation_id}:{k + 1}",
                                     correlation_id=message.correlation_id, content_type="application/json",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=hop_queue(k + 1))
            await message.ack()
        except Exception as exc:
            print(f"hop {k}: {exc!r}", file=sys.stderr, flush=True)
            await message.nack(requeue=True)

    await queue.consume(on_message)
    print("ready", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), lifetime)
    except TimeoutError:
        print(f"hop {k}: lifetime of {lifetime:.0f}s reached, exiting", file=sys.stderr, flush=True)
    await connection.close()
    await pool.close()


async def prepare_bare(rabbitmq_url: str, database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for k in range(1, HOPS + 1):
            await conn.execute(f"""
                CREATE SCHEMA {hop_schema(k)};
                CREATE TABLE {hop_schema(k)}.inbox (
                    message_id text PRIMARY KEY,
                    handled_at timestamptz NOT NULL DEFAULT now());
                CREATE TABLE {hop_schema(k)}.effect (
                    id             bigserial PRIMARY KEY,
                    message_id     text NOT NULL,
                    correlation_id text NOT NULL,
                    account_id     text NOT NULL,
                    body           bytea NOT NULL,
                    created_at     timestamptz NOT NULL DEFAULT now());""")
    finally:
        await conn.close()
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(BARE_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        for k in range(1, HOPS + 1):
            queue = await channel.declare_queue(hop_queue(k), durable=True, arguments={"x-queue-type": "quorum"})
            await queue.bind(exchange, routing_key=hop_queue(k))
    finally:
        await connection.close()


async def start_hops(rabbitmq_url: str, database_url: str, lifetime: float) -> list[asyncio.subprocess.Process]:
    procs = []
    for k in range(1, HOPS + 1):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--hop", str(k), "--rabbitmq-url", rabbitmq_url,
            "--database-url", database_url, "--lifetime", str(lifetime),
            stdout=asyncio.subprocess.PIPE, start_new_session=True)
        procs.append(proc)
    for k, proc in enumerate(procs, 1):
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"bare hop {k} did not start (exit code {proc.returncode})")
    return procs


async def stop_processes(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def bench_bare(rabbitmq_url: str, database_url: str, args: argparse.Namespace) -> Result:
    await prepare_bare(rabbitmq_url, database_url)
    procs = await start_hops(rabbitmq_url, database_url, lifetime=args.timeout + 120)
    db = await asyncpg.connect(database_url)
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(BARE_EXCHANGE, ensure=False)
        accounts = [f"bench-{i:04d}" for i in range(args.accounts)]
        items = []
        for i in range(args.deposits):
            event = deposit_event(accounts[i % len(accounts)])
            key = str(event.deposit_id)
            message = aio_pika.Message(event.model_dump_json().encode(), message_id=f"{key}:1", correlation_id=key,
                                       content_type="application/json",
                                       delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            items.append((key, lambda m=message: exchange.publish(m, routing_key=hop_queue(1))))
        say(f"bare: publishing {args.deposits} messages")
        roles = {p.pid: f"hop{k}" for k, p in enumerate(procs, 1)}
        cpu_before, wall_before = cpu_seconds(roles), time.monotonic()
        sent, publishing = await publish_all(items, in_flight=args.in_flight, rate=args.rate)

        async def progress() -> tuple[bool, str]:
            if any(p.returncode is not None for p in procs):
                raise RuntimeError("a bare hop exited")
            count = await db.fetchval(f"SELECT count(*) FROM {hop_schema(HOPS)}.effect")
            return count >= args.deposits, f"{count}/{args.deposits} at the last hop"

        await wait_until(progress, timeout=args.timeout, what="bare")
        cpu, wall = cpu_seconds(roles) - cpu_before, time.monotonic() - wall_before
        rows = await db.fetch(f"SELECT correlation_id, extract(epoch FROM created_at)::float8 AS t "
                              f"FROM {hop_schema(HOPS)}.effect")
        first = await db.fetch(f"SELECT correlation_id, extract(epoch FROM created_at)::float8 AS t "
                               f"FROM {hop_schema(1)}.effect")
        return Result("bare", args.deposits, sent, {r["correlation_id"]: r["t"] for r in rows},
                      {r["correlation_id"]: r["t"] for r in first},
                      [f"published in {publishing:.2f}s",
                       "matching: exact (the deposit id travels as correlation id)"], cpu, wall)
    finally:
        await connection.close()
        await db.close()
        await stop_processes(procs)


# ---------------------------------------------------------------- the real services


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


async def open_accounts(client, accounts: list[str], timeout: float) -> None:
    """Open every account at the ledger, then set its pie once the pie service knows it."""
    from m1.client import ServiceError

    gate = asyncio.Semaphore(16)

    async def one(account_id: str) -> None:
        async with gate:
            await client.call(OpenAccount(account_id=account_id))
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with gate:
                    await client.call(SetPie(account_id=account_id, pie=PIE))
                return
            except ServiceError:  # AccountOpened (or the prices) not seen by the pie yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    await asyncio.gather(*(one(a) for a in accounts))


def match_deposits(booked: list[asyncpg.Record], batches: list[asyncpg.Record]) -> dict[str, float]:
    """Per account: a deposit (in the ledger's booking order) is done at the ``created_at`` of
    the first window batch that brings the account's persisted intents up to its deposits
    booked so far (see the module docstring)."""
    by_account: dict[str, list[tuple[float, Decimal]]] = defaultdict(list)
    for b in batches:  # ordered by account, then created_at
        by_account[b["account_id"]].append((b["t"], b["amount"]))
    done: dict[str, float] = {}
    deposited: dict[str, Decimal] = defaultdict(Decimal)
    cursor: dict[str, int] = defaultdict(int)
    invested: dict[str, Decimal] = defaultdict(Decimal)
    for row in booked:  # ordered by the ledger's entry id
        account = row["account_id"]
        deposited[account] += row["amount"]
        queue = by_account[account]
        while invested[account] < deposited[account] and cursor[account] < len(queue):
            invested[account] += queue[cursor[account]][1]
            cursor[account] += 1
        if invested[account] >= deposited[account] and cursor[account]:
            done[row["funding_id"]] = queue[cursor[account] - 1][0]
    return done


async def bench_real(settings: Settings, args: argparse.Namespace) -> Result:
    from m1.client import Client
    from m1.runner import Supervisor, migrate_all

    missing = [n for n in REAL_SERVICES if not (REPO / "services" / n / "handlers.py").exists()]
    if missing:
        raise RuntimeError(f"services not written yet: {', '.join(missing)}")
    os.environ.pop("M1_CLOCK", None)  # the services must run on the wall clock
    await migrate_all(settings)
    log_dir = Path(tempfile.mkdtemp(prefix="m1-bench-logs-"))
    supervisor = Supervisor(settings, REAL_SERVICES, log_dir, ports={n: free_port() for n in REAL_SERVICES},
                            env={"M1_LOG_LEVEL": args.log_level, "M1_HTTP_HOST": LOCAL})
    say(f"real: starting {', '.join(REAL_SERVICES)} (logs in {log_dir})")
    supervisor.start()
    db = await asyncpg.connect(settings.database_url)
    try:
        failed = await asyncio.to_thread(supervisor.wait_healthy, 90.0)
        if failed:
            raise RuntimeError(f"services not healthy: {failed}; logs in {log_dir}")
        accounts = [f"bench-{i:04d}" for i in range(args.accounts)]
        async with Client(settings) as client:
            await client.call(SetPrices(prices=PRICES))
            say(f"real: opening {len(accounts)} accounts with a 60/40 pie")
            await open_accounts(client, accounts, timeout=60.0)
            items = []
            for i in range(args.deposits):
                event = deposit_event(accounts[i % len(accounts)])
                key = str(event.deposit_id)
                items.append((key, lambda e=event, k=key: client.publish_event(e, k)))
            pids = ", ".join(f"{n} {p.pid}" for n, p in supervisor.children.items())
            say(f"real: publishing {args.deposits} deposits (pids: {pids})")
            roles = {p.pid: n for n, p in supervisor.children.items()}
            cpu_before, wall_before = cpu_seconds(roles), time.monotonic()
            sent, publishing = await publish_all(items, in_flight=args.in_flight, rate=args.rate)
            target = DEPOSIT * args.deposits

            async def progress() -> tuple[bool, str]:
                if exited := supervisor.exited():
                    raise RuntimeError(f"services exited: {exited}; logs in {log_dir}")
                # Refusals on the deposit path only: a SetPie refused during set-up is expected.
                refused = await db.fetchval(
                    "SELECT (SELECT count(*) FROM ledger.dead_letters WHERE routing_key = 'funding.deposit.received')"
                    " + (SELECT count(*) FROM pie.dead_letters WHERE routing_key = 'ledger.cash.changed')"
                    " + (SELECT count(*) FROM \"window\".dead_letters WHERE routing_key = 'pie.intents.submitted')")
                if refused:
                    raise RuntimeError(f"{refused} messages dead-lettered; logs in {log_dir}")
                invested = await db.fetchval("SELECT coalesce(sum(amount), 0) FROM \"window\".intents")
                return invested >= target, f"${invested} of ${target} in window.intents"

            await wait_until(progress, timeout=args.timeout, what="real")
            cpu, wall = cpu_seconds(roles) - cpu_before, time.monotonic() - wall_before
        booked = await db.fetch("SELECT funding_id::text, account_id, amount,"
                                " extract(epoch FROM booked_at)::float8 AS t"
                                " FROM ledger.funding WHERE kind = 'deposit' ORDER BY entry_id")
        batches = await db.fetch("SELECT account_id, batch_id, min(extract(epoch FROM created_at))::float8 AS t,"
                                 " sum(amount) AS amount FROM \"window\".intents"
                                 " GROUP BY account_id, batch_id ORDER BY account_id, t")
        done = match_deposits(booked, batches)
        notes = [f"published in {publishing:.2f}s",
                 "matching: per account, ledger booking order against cumulative window batch amounts",
                 f"pie batches: {len(batches)} for {args.deposits} deposits"]
        result = Result("real", args.deposits, sent, done, {r["funding_id"]: r["t"] for r in booked}, notes,
                        cpu, wall)
    finally:
        await db.close()
        await asyncio.to_thread(supervisor.stop)
    shutil.rmtree(log_dir, ignore_errors=True)  # kept when the run failed, for its logs
    return result


# ---------------------------------------------------------------- report


async def machine_facts(settings: Settings) -> list[str]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        pg = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    connection = await aio_pika.connect(settings.rabbitmq_url)
    try:
        props = connection.transport.connection.server_properties
        rabbit = props.get("version", "?")
        rabbit = rabbit.decode() if isinstance(rabbit, bytes) else rabbit
    finally:
        await connection.close()
    return [f"nproc {os.cpu_count()}", f"Python {platform.python_version()}", f"RabbitMQ {rabbit}",
            f"PostgreSQL {pg}", platform.platform()]


def report(results: list[Result], facts: list[str], args: argparse.Namespace) -> str:
    load = f"paced at {args.rate:g}/s" if args.rate else f"burst, up to {args.in_flight} publishes in flight"
    lines = [
        f"Funding benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "machine: " + ", ".join(facts),
        f"N = {args.deposits} deposits of ${DEPOSIT} over {args.accounts} accounts; {load}; prefetch {PREFETCH}",
    ]
    if not results:
        return "\n".join(lines)
    lines += ["", f"{'path':<6}{'N':>7}{'elapsed s':>11}{'msgs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'hop1 p50 ms':>13}"]
    for r in results:
        lat = r.latencies_ms(r.done)
        first = r.latencies_ms(r.first_hop)
        lines.append(f"{r.path:<6}{len(r.done):>7}{r.elapsed:>11.2f}{r.rate:>9.0f}{percentile(lat, 50):>9.0f}"
                     f"{percentile(lat, 99):>9.0f}{percentile(first, 50):>13.0f}")
    by_path = {r.path: r for r in results}
    if "real" in by_path and "bare" in by_path:
        ratio = f"real/bare throughput: {by_path['real'].rate / by_path['bare'].rate:.2f}"
        if args.rate:
            ratio += " (paced: near 1 means both kept up with the offered rate; compare latencies)"
        lines += ["", ratio]
    lines += ["", "latency: from just before the publish to the timestamp of the last hop's row (hop1: of the first"
              " hop's row); each is taken as that hop's transaction begins"]
    for r in results:
        lines += [f"{r.path}: {note}" for note in r.notes]
    if any(r.cpu for r in results):
        lines += ["", f"CPU seconds from first publish to done (this machine has {os.cpu_count()} cores):"]
        for r in results:
            used = ", ".join(f"{role} {secs:.1f}" for role, secs in r.cpu.most_common() if secs >= 0.05)
            lines.append(f"{r.path}: {used} (of {r.wall * (os.cpu_count() or 1):.1f} over {r.wall:.1f} s)")
        lines.append("('other' is everything else running on the machine meanwhile: a high figure means a noisy run)")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def check_local(url: str) -> None:
    host = urlsplit(url).hostname
    if host != LOCAL:
        raise SystemExit(f"refusing to run against {host}: the benchmark talks only to {LOCAL}")


async def main(args: argparse.Namespace) -> int:
    vhost, database = unique_name("m1-bench"), unique_name("m1_bench")
    check_local(f"amqp://{RABBIT_HOST}/")
    check_local(PG_BASE)
    settings = Settings(rabbitmq_url=create_vhost(vhost), database_url=f"{PG_BASE}/{database}",
                        log_level=args.log_level)
    results: list[Result] = []
    errors: list[str] = []
    try:
        await ensure_database(settings.database_url)
        facts = await machine_facts(settings)
        runs = {"bare": lambda: bench_bare(settings.rabbitmq_url, settings.database_url, args),
                "real": lambda: bench_real(settings, args)}
        for path, run in runs.items():
            if args.only not in (None, path):
                continue
            try:
                # The path's own waits are bounded; this bounds everything else (publishes, start-up).
                results.append(await asyncio.wait_for(run(), args.timeout + 180))
            except Exception as exc:
                errors.append(f"{path}: {exc!r}")
    finally:
        await drop_database(settings.database_url)
        delete_vhost(vhost)
    print(report(results, facts, args))
    for error in errors:
        print(f"\nnot measured: {error}")
    return 1 if errors else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deposits", type=int, default=2000, help="deposits per path (default 2000)")
    parser.add_argument("--accounts", type=int, default=200, help="accounts they are spread over (default 200)")
    parser.add_argument("--rate", type=float, default=None, help="publish at this many per second (default: burst)")
    parser.add_argument("--in-flight", type=int, default=200, help="publishes awaiting a confirm at once")
    parser.add_argument("--only", choices=["real", "bare"], default=None, help="run one path only")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds each path may take to finish")
    parser.add_argument("--log-level", default="WARNING", help="the services' log level (default WARNING)")
    # One hop of the bare chain (the benchmark starts these itself).
    parser.add_argument("--hop", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rabbitmq-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.deposits < 1 or args.accounts < 1:
        parser.error("--deposits and --accounts must be at least 1")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.hop is not None:
        asyncio.run(run_hop(arguments.hop, arguments.rabbitmq_url, arguments.database_url, arguments.lifetime))
    else:
        try:
            sys.exit(asyncio.run(main(arguments)))
        except KeyboardInterrupt:  # the vhost, database and processes were removed on the way out
            sys.exit(130)
