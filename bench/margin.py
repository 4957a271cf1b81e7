"""Margin benchmark: one price tick of a widely held security re-evaluates every margin
account holding it, against the floor of the same evaluation as one bare SQL UPDATE.

On a RabbitMQ vhost and a PostgreSQL database that it creates and removes itself:

- **tick**: the margin service runs in this process. Timed: publish ``market.prices.changed``
  for the security every account holds, until the service has committed its handling (the
  set-based statement over all holders, the calls it issues, their events in the outbox).
- **statements**: the service's two statements alone (the price upsert; then one statement
  that moves every holder's market value and requirement by the change, evaluates the margin
  accounts among them and issues the calls), in a transaction rolled back, on the same data.
- **floor**: one plain UPDATE over a bare copy of the accounts: each holder's market value
  and requirement moved by quantity x the price change, and a flag where equity is under
  the requirement (no calls table, no events, no other statement).

Setup (not timed): ``--accounts`` margin accounts holding ``--per-account`` securities each
(one of them the widely held one), a loan between 55% and 70% of the holdings, prices.

    .venv/bin/python bench/margin.py [--accounts 100000] [--per-account 20] [--drop 0.2]

It is a separate command, never part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402

from services.margin import domain, store  # noqa: E402
from shared.contracts import PricesChanged  # noqa: E402
from shared.db import drop_database, ensure_database, migrate  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.support import PG_BASE, Bus, create_vhost, delete_vhost, unique_name  # noqa: E402

WIDE = "WIDE"
UNIVERSE = 500


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def populate(conn: asyncpg.Connection, accounts: int, per_account: int) -> None:
    """Accounts, positions and prices generated in SQL (fast and reproducible)."""
    await conn.execute("SELECT setseed(0.7)")
    await conn.execute(
        f"""INSERT INTO margin.prices (symbol, price, as_of)
            SELECT 'S' || k, round((10 + random() * 490)::numeric, 2), now() FROM generate_series(0, {UNIVERSE - 1}) k
            UNION ALL SELECT '{WIDE}', 100, now()""")
    await conn.execute(
        f"""INSERT INTO margin.accounts (account_id, kind, plan, cash, version)
            SELECT 'm' || i, 'individual', 'basic', 0, 1 FROM generate_series(1, {accounts}) i""")
    # symbol k*13 + i*7 mod 500 is distinct for k = 1..19 (13k < 500): no duplicate positions
    await conn.execute(
        f"""INSERT INTO margin.positions (account_id, symbol, quantity, version)
            SELECT 'm' || i, CASE WHEN k = 0 THEN '{WIDE}' ELSE 'S' || ((i * 7 + k * 13) % {UNIVERSE}) END,
                   round((1 + random() * 20)::numeric, 5), 1
            FROM generate_series(1, {accounts}) i, generate_series(0, {per_account - 1}) k""")
    await conn.execute(
        """UPDATE margin.accounts a SET loan = round(v.mv * (0.55 + random() * 0.15)::numeric, 2)
           FROM (SELECT p.account_id, sum(p.quantity * pr.price) AS mv FROM margin.positions p
                 JOIN margin.prices pr USING (symbol) GROUP BY p.account_id) v
           WHERE a.account_id = v.account_id""")
    await conn.execute("SET search_path TO margin")
    await store.recompute(conn, Decimal("0.30"), Decimal("0.25"))
    await conn.execute("RESET search_path")
    await conn.execute("""CREATE TABLE public.floor_accounts AS
                          SELECT account_id, cash, loan, market_value AS mv, requirement AS req, false AS under
                          FROM margin.accounts""")
    await conn.execute("ALTER TABLE public.floor_accounts ADD PRIMARY KEY (account_id)")
    await conn.execute("ANALYZE")


# One statement: each holder's market value and requirement move by quantity x the price
# change, and the flag says whether equity is now under the requirement.
FLOOR = f"""
UPDATE public.floor_accounts f SET mv = f.mv + d.dv, req = f.req + d.dv * 0.30,
    under = f.mv + d.dv + f.cash - f.loan < f.req + d.dv * 0.30
FROM (SELECT account_id, quantity * $1::numeric AS dv FROM margin.positions WHERE symbol = '{WIDE}') d
WHERE f.account_id = d.account_id
"""


async def main(args) -> None:
    vhost, database = unique_name("m1-bench"), unique_name("m1_bench")
    settings = Settings(rabbitmq_url=create_vhost(vhost), database_url=f"{PG_BASE}/{database}",
                        log_level="WARNING", margin_schedule=False, relay_poll_seconds=0.2)
    logging.disable(logging.WARNING)
    try:
        await ensure_database(settings.database_url)
        await migrate(settings.database_url, "margin", REPO / "services" / "margin" / "migrations")
        conn = await asyncpg.connect(settings.database_url)
        try:
            say(f"populating {args.accounts} accounts x {args.per_account} positions ...")
            started = time.perf_counter()
            await populate(conn, args.accounts, args.per_account)
            say(f"  done in {time.perf_counter() - started:.1f}s")
            price = (Decimal(100) * (1 - Decimal(str(args.drop)))).quantize(Decimal("0.01"))
            rules = domain.Rules()
            now = datetime.now(UTC)

            # the statements alone, rolled back (twice: the first run reads the tables into memory)
            deadline = domain.call_deadline(now, 3)
            for _ in range(2):
                tx = conn.transaction()
                await tx.start()
                await conn.execute("SET LOCAL search_path TO margin")
                started = time.perf_counter()
                changes = await store.set_prices(conn, {WIDE: price}, now)
                rows = await store.tick(conn, changes, house=rules.maintenance_rate,
                                        regulatory=rules.regulatory_minimum, hard_floor=rules.hard_floor,
                                        deadline=deadline, now=now)
                statement_s = time.perf_counter() - started
                await tx.rollback()
                await conn.execute("VACUUM margin.accounts, margin.prices, margin.calls")  # the rolled-back rows

            # the floor: the same change as one bare UPDATE
            tx = conn.transaction()
            await tx.start()
            started = time.perf_counter()
            await conn.execute(FLOOR, price - 100)
            floor_s = time.perf_counter() - started
            floor_under = await conn.fetchval("SELECT count(*) FROM public.floor_accounts WHERE under")
            await tx.rollback()
        finally:
            await conn.close()

        # the whole tick through the service
        from services.margin.app import create_service

        async with create_service(settings).running(), Bus(settings.rabbitmq_url) as bus:
            event = PricesChanged(prices={WIDE: price}, as_of=datetime.now(UTC))
            message_id = str(uuid.uuid4())
            conn = await asyncpg.connect(settings.database_url)
            try:
                started = time.perf_counter()
                await bus.publish_raw(event.TYPE, event.model_dump_json().encode(), message_id=message_id)
                while not await conn.fetchval("SELECT count(*) FROM margin.inbox WHERE message_id = $1", message_id):
                    await asyncio.sleep(0.005)
                tick_s = time.perf_counter() - started
                calls = await conn.fetchval("SELECT count(*) FROM margin.calls")
                liquidating = await conn.fetchval("SELECT count(*) FROM margin.calls WHERE status = 'liquidating'")
            finally:
                await conn.close()

        issued = sum(1 for r in rows if r["change"] == "issued")
        print(f"margin tick: {args.accounts} accounts x {args.per_account} securities, "
              f"{WIDE} 100 -> {price} ({platform.processor() or platform.machine()}, "
              f"{__import__('os').cpu_count()} CPUs)")
        print(f"  tick through the service : {tick_s:7.3f} s  ({calls} calls issued, {liquidating} under the hard "
              f"floor liquidating)")
        print(f"  statements alone         : {statement_s:7.3f} s  ({issued} calls)")
        print(f"  floor (bare UPDATE)      : {floor_s:7.3f} s  ({floor_under} accounts under)")
        print(f"  ratio tick / floor       : {tick_s / floor_s:7.2f}")
    finally:
        await drop_database(settings.database_url)
        delete_vhost(vhost)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--per-account", type=int, default=20)
    parser.add_argument("--drop", type=float, default=0.2, help="fractional price drop of the widely held security")
    asyncio.run(main(parser.parse_args()))
