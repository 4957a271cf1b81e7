"""Window benchmark: one trade window of N intents, from the intents' COPY-in to every fill
booked in the ledger, against the floor of the same work as bare SQL.

On a RabbitMQ vhost and a PostgreSQL database that it creates and removes itself:

- **close**: the ledger, market and window services run in this process. Timed: COPY the
  intents into ``window.intents`` (pending), then ``window.window.close``: freeze, fund per
  account, net per security, execute at the venue, allocate, summarise, publish the fills in
  batches (``--batch-accounts`` accounts per message), and the ledger books every batch
  (one entry each, multi-row statements); the clock stops when the last batch is booked.
- **floor**: the same rows COPY'd into a bare table, then one set-based statement that nets
  per security and allocates every intent at the window price into a fills table.
- **rows**: afterwards, the rows the close wrote (the window's intents, fills and projection,
  the ledger's postings, balances, trade records, tax lots and gains) inserted again, one
  statement per table, into empty copies of their tables with the same indexes: what writing
  them costs with no logic around it; then the same statements on two connections at once,
  the least time this machine's two cores take to write them.

Setup (not timed): the accounts open in the ledger with cash for every buy and, for every
security they sell, shares in one tax lot bought more than a year ago (so that the sells
close lots and realise gains, as in production), the same cash and positions in the window's
projection, and prices for every security.

    .venv/bin/python bench/window.py [--intents N] [--accounts A] [--securities S] [--batch-accounts B]

It is a separate command, never part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402

from bench_cpu import cpu_seconds  # noqa: E402  (beside this file)
from m1.runner import migrate_all  # noqa: E402
from shared.contracts import CloseWindow  # noqa: E402
from shared.db import drop_database, ensure_database  # noqa: E402
from shared.service import tune_gc  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.support import PG_BASE, Bus, create_vhost, delete_vhost, unique_name  # noqa: E402

SOURCES = ["auto_invest", "rebalance", "order", "liquidation"]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_rows(n: int, accounts: int, securities: int, seed: int = 7) -> tuple[list[tuple], dict[str, Decimal]]:
    """N intents (mostly buys, some sells) over the accounts and securities, and a price per
    security."""
    rng = random.Random(seed)
    symbols = [f"S{k:04d}" for k in range(securities)]
    prices = {s: Decimal(rng.randint(5_000_000, 500_000_000)) / Decimal(1_000_000) for s in symbols}
    now = datetime.now(UTC)
    batch = uuid.uuid4()
    rows = []
    for _ in range(n):
        side = "sell" if rng.random() < 0.3 else "buy"
        rows.append((uuid.UUID(int=rng.getrandbits(128), version=4), batch, f"a{rng.randrange(accounts):06d}",
                     rng.choice(symbols), side, Decimal(rng.randint(100, 50_000)) / 100, None,
                     rng.choice(SOURCES), "pending", now))
    return rows, prices


INTENT_COLUMNS = ["intent_id", "batch_id", "account_id", "symbol", "side", "amount", "quantity", "source", "status",
                  "created_at"]

FLOOR_SQL = """
WITH net AS (
    SELECT symbol, sum(CASE side WHEN 'buy' THEN amount ELSE -amount END) AS net FROM floor.intents GROUP BY symbol),
exec AS (
    SELECT n.symbol, p.price, div(abs(n.net) * 100000, p.price) / 100000 AS quantity FROM net n
    JOIN floor.prices p USING (symbol))
INSERT INTO floor.fills (intent_id, account_id, symbol, side, quantity, amount, price)
SELECT i.intent_id, i.account_id, i.symbol, i.side,
       ((div(i.amount * 100000, e.price)
         + CASE WHEN i.side = 'sell' AND div(i.amount * 100000, e.price) * e.price <> i.amount * 100000
                THEN 1 ELSE 0 END) / 100000)::numeric(20, 5),
       i.amount, e.price
FROM floor.intents i JOIN exec e USING (symbol)
"""


async def bench_floor(url: str, rows: list[tuple], prices: dict[str, Decimal]) -> tuple[float, float]:
    """The floor's two parts, in seconds: its COPY-in, and its one statement."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("""CREATE SCHEMA floor;
            CREATE TABLE floor.intents (intent_id uuid PRIMARY KEY, batch_id uuid, account_id text, symbol text,
                side text, amount numeric(16, 2), quantity numeric(20, 5), source text, status text,
                created_at timestamptz);
            CREATE TABLE floor.prices (symbol text PRIMARY KEY, price numeric);
            CREATE TABLE floor.fills (intent_id uuid PRIMARY KEY, account_id text, symbol text, side text,
                quantity numeric(20, 5), amount numeric(16, 2), price numeric);""")
        await conn.copy_records_to_table("prices", schema_name="floor", records=list(prices.items()))
        start = time.perf_counter()
        await conn.copy_records_to_table("intents", schema_name="floor", records=rows, columns=INTENT_COLUMNS)
        copied = time.perf_counter()
        await conn.execute(FLOOR_SQL)
        return copied - start, time.perf_counter() - copied
    finally:
        await conn.close()


# The rows the close writes, by table, as they stand once the window is booked; ``{window}``
# is the window id, ``{pattern}`` its entries' reference pattern (quoted literals). Buy lots
# only: the lots the sells closed are updated, not written.
WRITTEN = {
    '"window".window_intents': "SELECT * FROM \"window\".window_intents WHERE window_id = {window}",
    '"window".fills': "SELECT * FROM \"window\".fills WHERE window_id = {window}",
    '"window".cash': "SELECT * FROM \"window\".cash",
    '"window".positions': "SELECT * FROM \"window\".positions",
    "ledger.postings": "SELECT p.* FROM ledger.postings p JOIN ledger.entries e USING (entry_id) "
                       "WHERE e.kind = 'fill' AND e.reference LIKE {pattern}",
    "ledger.balances": "SELECT * FROM ledger.balances WHERE book LIKE 'customer:%'",
    "ledger.trades": "SELECT * FROM ledger.trades WHERE window_id = {window}",
    "ledger.lots": "SELECT * FROM ledger.lots WHERE window_id = {window}",
    "ledger.realised_gains": "SELECT * FROM ledger.realised_gains WHERE sale_id LIKE {pattern}",
}


def copy_of(table: str) -> str:
    return "written." + table.replace('"', "").replace(".", "_")


async def bench_rows(url: str, window_id: str) -> tuple[list[tuple[str, int, float]], float]:
    """The bare cost of the rows the close wrote: each table's rows of this window inserted,
    in one statement per table, into an empty copy of the table with the same indexes and
    checks (no triggers, no foreign keys). The rows are first gathered (untimed) into a
    plain table each, so that the time is the writing only, not the search for them among
    the other rows (the accounts' earlier postings, say). Per table: (name, rows, seconds),
    one statement after the other; then the same statements again on two connections at
    once (the tables shared out by their time, longest first), the wall time of which is the
    least any close on this machine's two cores spends writing these rows."""
    conn = await asyncpg.connect(url)
    out = []
    queries = {table: f"SELECT * FROM {copy_of(table)}_rows" for table in WRITTEN}
    try:
        await conn.execute("CREATE SCHEMA written")
        await conn.execute("SET work_mem = '256MB'")
        for table, query in WRITTEN.items():
            found = query.format(window=f"'{uuid.UUID(window_id)}'", pattern=f"'{window_id}:%'")
            await conn.execute(f"CREATE TABLE {copy_of(table)}_rows AS {found}")
            await conn.execute(f"VACUUM ANALYZE {copy_of(table)}_rows")  # read like any table, hint bits set
        await conn.execute("CHECKPOINT")
        for table, query in queries.items():
            await conn.execute(f"CREATE TABLE {copy_of(table)} (LIKE {table} INCLUDING DEFAULTS "
                               "INCLUDING CONSTRAINTS INCLUDING INDEXES)")
            start = time.perf_counter()
            status = await conn.execute(f"INSERT INTO {copy_of(table)} {query}")
            out.append((table, int(status.split()[-1]), time.perf_counter() - start))
        await conn.execute("TRUNCATE " + ", ".join(copy_of(table) for table in queries))
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    shares: list[tuple[float, list[str]]] = [(0.0, []), (0.0, [])]
    for table, _, seconds in sorted(out, key=lambda row: -row[2]):
        shares.sort(key=lambda share: share[0])
        shares[0] = (shares[0][0] + seconds, shares[0][1] + [table])

    async def write(tables: list[str]) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("SET work_mem = '256MB'")
            for table in tables:
                await conn.execute(f"INSERT INTO {copy_of(table)} {queries[table]}")
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(write(tables) for _, tables in shares))
    return out, time.perf_counter() - start


CASH = Decimal("1000000.00")


def holdings(rows: list[tuple], prices: dict[str, Decimal], seed: int = 11) -> list[tuple]:
    """What the accounts hold before the window: for every (account, security) it sells, a
    fifth more shares than its sells need at the current price, bought in one lot more than
    a year ago at a cost within 30% of today's value (so sales realise long-term gains and
    losses). Rows (account, symbol, quantity, cost)."""
    rng = random.Random(seed)
    sold: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        if row[4] == "sell":
            sold[(row[2], row[3])] = sold.get((row[2], row[3]), Decimal(0)) + row[5]
    out = []
    for (account, symbol), amount in sorted(sold.items()):
        quantity = (amount * Decimal("1.2") / prices[symbol]).quantize(Decimal("0.00001"))
        cost = (quantity * prices[symbol] * Decimal(rng.randint(70, 130)) / 100).quantize(Decimal("0.01"))
        out.append((account, symbol, quantity, cost))
    return out


async def setup_services(url: str, accounts: int, prices: dict[str, Decimal], held: list[tuple]) -> None:
    """Open the accounts with cash and their holdings, consistent across the services: the
    ledger's entry, postings, balances and tax lots, the window's projection (version 1 on
    both sides), and the market's prices."""
    conn = await asyncpg.connect(url)
    try:
        now = datetime.now(UTC)
        bought = now - timedelta(days=400)
        ids = [f"a{k:06d}" for k in range(accounts)]
        await conn.copy_records_to_table("accounts", schema_name="ledger",
                                         columns=["account_id", "kind", "plan", "opened_at", "version"],
                                         records=[(a, "individual", "basic", now, 1) for a in ids])
        entry_id = await conn.fetchval(
            """INSERT INTO ledger.entries (kind, reference, booked_at) VALUES ('deposit', 'bench-setup', $1)
               RETURNING entry_id""", now)
        postings = [(entry_id, f"customer:{a}:cash", "USD", CASH) for a in ids]
        postings.append((entry_id, "firm:bank", "USD", -CASH * accounts))
        street: dict[str, Decimal] = {}
        for account, symbol, quantity, _ in held:
            postings.append((entry_id, f"customer:{account}:securities", symbol, quantity))
            street[symbol] = street.get(symbol, Decimal(0)) - quantity
        postings += [(entry_id, "firm:street", symbol, q) for symbol, q in sorted(street.items())]
        await conn.copy_records_to_table("postings", schema_name="ledger", records=postings,
                                         columns=["entry_id", "book", "asset", "amount"])
        await conn.copy_records_to_table("balances", schema_name="ledger", columns=["book", "asset", "amount"],
                                         records=[(b, a, q) for _, b, a, q in postings if not b.startswith("firm:")])
        await conn.copy_records_to_table(
            "lots", schema_name="ledger",
            columns=["account_id", "symbol", "window_id", "intent_id", "acquired_at", "acquired_on", "quantity",
                     "cost", "remaining", "remaining_cost"],
            records=[(a, s, "bench-setup", uuid.uuid4(), bought, bought.date(), q, c, q, c) for a, s, q, c in held])
        await conn.copy_records_to_table("cash", schema_name="window", records=[(a, CASH, 1) for a in ids])
        await conn.copy_records_to_table("positions", schema_name="window",
                                         columns=["account_id", "symbol", "quantity", "version"],
                                         records=[(a, s, q, 1) for a, s, q, _ in held])
        await conn.copy_records_to_table("prices", schema_name="market", columns=["symbol", "price", "updated_at"],
                                         records=[(s, p, now) for s, p in prices.items()])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def bench_close(settings: Settings, rows: list[tuple]
                      ) -> tuple[float, dict[str, tuple[float, dict]], int, str]:
    from services.ledger.app import create_service as ledger
    from services.market.app import create_service as market
    from services.window.app import create_service as window

    marks: dict[str, tuple[float, dict]] = {}  # what -> (seconds since start, CPU seconds by role then)
    services = [ledger(settings), market(settings), window(settings)]
    # As every service process does at start (Service.run): here that also keeps the
    # benchmark's own million rows out of the services' collections, as in production, where
    # each service is a process of its own.
    tune_gc(settings.gc_threshold)
    async with services[0].running(), services[1].running(), services[2].running(), \
            Bus(settings.rabbitmq_url) as bus:
        for service in services:  # one line per handled message would cost more than the work
            service.log.setLevel(logging.WARNING)
        conn = await asyncpg.connect(settings.database_url)
        try:
            cpu_start = cpu_seconds({})
            start = time.perf_counter()

            def mark(what: str) -> None:
                marks[what] = (time.perf_counter() - start, cpu_seconds({}) - cpu_start)

            await conn.copy_records_to_table("submitted_intents", schema_name="window", records=rows, columns=INTENT_COLUMNS)
            mark("copy-in")
            reply = await bus.request(CloseWindow(), timeout=3600)
            assert reply.ok, reply
            mark("closed (frozen, funded, netted)")
            window_id = reply.result["window_id"]
            while (batches := await conn.fetchval(
                    """SELECT batches FROM "window".windows WHERE window_id = $1 AND status = 'allocated'""",
                    uuid.UUID(window_id))) is None:
                await asyncio.sleep(0.05)
            mark("allocated, batches in the outbox")
            while await conn.fetchval("SELECT count(*) FROM ledger.entries WHERE kind = 'fill' AND reference LIKE $1",
                                      f"{window_id}:%") < batches:
                await asyncio.sleep(0.05)
            mark("every batch booked")
            elapsed = time.perf_counter() - start
            # Not part of the close as timed: the window applying the last ledger.fills.booked
            # to its projection (so that the rows counted below are all there).
            while await conn.fetchval('SELECT count(*) FROM "window".booked_batches WHERE window_id = $1',
                                      uuid.UUID(window_id)) < batches:
                await asyncio.sleep(0.05)
            mark("the window heard every batch")
            fills = await conn.fetchval('SELECT count(*) FROM "window".fills WHERE window_id = $1',
                                        uuid.UUID(window_id))
            off = await conn.fetchval("SELECT count(*) FROM (SELECT asset FROM ledger.postings GROUP BY asset "
                                      "HAVING sum(amount) <> 0) t")
            assert off == 0, "the books do not balance"
            negative = await conn.fetchval("SELECT count(*) FROM ledger.balances WHERE book LIKE 'customer:%' "
                                           "AND amount < 0")
            assert negative == 0, f"{negative} customer balances below zero"
            gains = await conn.fetchrow("SELECT count(*) AS n, count(*) FILTER (WHERE basis_known) AS known "
                                        "FROM ledger.realised_gains")
            say(f"realised gains: {gains['n']:,} ({gains['known']:,} of known basis)")
            return elapsed, marks, fills, window_id
        finally:
            await conn.close()


async def main(args: argparse.Namespace) -> int:
    vhost, database = unique_name("m1-benchw"), unique_name("m1_benchw")
    settings = Settings(rabbitmq_url=create_vhost(vhost), database_url=f"{PG_BASE}/{database}", log_level="WARNING",
                        window_fill_batch_accounts=args.batch_accounts, window_schedule=False,
                        relay_poll_seconds=0.2)
    logging.getLogger().setLevel(logging.WARNING)
    await ensure_database(settings.database_url)
    try:
        await migrate_all(settings)
        say(f"making {args.intents:,} intents over {args.accounts:,} accounts and {args.securities} securities")
        rows, prices = make_rows(args.intents, args.accounts, args.securities)
        held = holdings(rows, prices)
        await setup_services(settings.database_url, args.accounts, prices, held)
        say("floor: COPY-in + one netting and allocation statement")
        floor_copy, floor_statement = await bench_floor(settings.database_url, rows, prices)
        floor = floor_copy + floor_statement
        say(f"floor: {floor:.2f} s")
        say("close: COPY-in + the window's close through the services to the last booked batch")
        elapsed, marks, fills, window_id = await bench_close(settings, rows)
        say("rows: what the close wrote, inserted bare into copies of its tables")
        written, parallel = await bench_rows(settings.database_url, window_id)
    finally:
        await drop_database(settings.database_url)
        delete_vhost(vhost)
    print(f"window benchmark on {platform.node()} ({platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"  intents {args.intents:,}, accounts {args.accounts:,}, securities {args.securities}, "
          f"accounts per fills batch {args.batch_accounts}, fills booked {fills:,}")
    print("  close, by phase (wall seconds; CPU seconds of the services' process, PostgreSQL, RabbitMQ, other):")
    before_at, before_cpu = 0.0, {}
    for what, (at, cpu) in marks.items():
        used = {role: cpu.get(role, 0) - before_cpu.get(role, 0) for role in ("bench", "postgres", "rabbitmq", "other")}
        print(f"    {what:<34} at {at:7.2f} s  (+{at - before_at:6.2f} s; CPU services {used['bench']:5.1f}, "
              f"postgres {used['postgres']:5.1f}, rabbitmq {used['rabbitmq']:4.1f}, other {used['other']:4.1f})")
        before_at, before_cpu = at, cpu
    print(f"  close: COPY-in to every batch booked: {elapsed:8.2f} s")
    print(f"  floor: COPY-in + one set-based netting and allocation statement: {floor:8.2f} s "
          f"(COPY-in {floor_copy:.2f} s, statement {floor_statement:.2f} s)")
    print(f"  ratio close / floor: {elapsed / floor:.2f}x (goal: within 3x)")
    bare = sum(seconds for _, _, seconds in written)
    print("  rows the close wrote, gathered first, then inserted bare "
          "(one statement per table, same indexes; no triggers):")
    for table, count, seconds in written:
        print(f"    {table:<24} {count:>10,} rows {seconds:7.2f} s")
    print(f"  rows: {sum(c for _, c, _ in written):,} in {bare:.2f} s; floor + rows: {floor + bare:.2f} s "
          f"(close / (floor + rows): {elapsed / (floor + bare):.2f}x)")
    copy_in = marks["copy-in"][0]
    print(f"  the same rows on two connections at once: {parallel:.2f} s; with the close's own COPY-in "
          f"({copy_in:.2f} s), writing what this close keeps takes at least {copy_in + parallel:.2f} s "
          f"= {(copy_in + parallel) / floor:.2f}x the floor, before any logic")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intents", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--securities", type=int, default=500)
    parser.add_argument("--batch-accounts", type=int, default=Settings().window_fill_batch_accounts,
                        help="accounts per fills batch (one message, one ledger entry)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
