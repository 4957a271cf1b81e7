"""SQL of tax lots, realised gains, dividends and the daily job. Parameters only; the caller
owns the transaction. Every write is one multi-row statement (``unnest``) however many
accounts it covers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal

import asyncpg

from services.ledger.domain import cash_book
from services.ledger.lots import Closure, Lot, Sale

# ---------------------------------------------------------------- lots and gains


async def open_lots(conn: asyncpg.Connection, pairs: Sequence[tuple[str, str]]
                    ) -> dict[tuple[str, str], list[Lot]]:
    """The open lots of each (account, symbol), locked."""
    rows = await conn.fetch(
        # One index probe per pair (``lots_open``), whatever the size of the lots table.
        """SELECT l.* FROM unnest($1::text[], $2::text[]) AS p(a, s)
           CROSS JOIN LATERAL (SELECT lot_id, account_id, symbol, acquired_on, remaining, remaining_cost FROM lots
                               WHERE account_id = p.a AND symbol = p.s AND remaining > 0 FOR UPDATE) l
           ORDER BY l.lot_id""",
        [a for a, _ in pairs], [s for _, s in pairs],
    )
    out: dict[tuple[str, str], list[Lot]] = defaultdict(list)
    for r in rows:
        out[(r["account_id"], r["symbol"])].append(Lot(r["lot_id"], r["acquired_on"], r["remaining"],
                                                       r["remaining_cost"]))
    return out


async def update_lots(conn: asyncpg.Connection, lots: Iterable[Lot]) -> None:
    lots = list(lots)
    if lots:
        await conn.execute(
            """UPDATE lots SET remaining = u.q, remaining_cost = u.c
               FROM unnest($1::bigint[], $2::numeric[], $3::numeric[]) AS u(id, q, c) WHERE lots.lot_id = u.id""",
            [lot.lot_id for lot in lots], [lot.quantity for lot in lots], [lot.cost for lot in lots],
        )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


async def insert_gains(conn: asyncpg.Connection, closed: Sequence[tuple[Sale, Closure]], sold_at: datetime,
                       sold_on: date) -> None:
    if closed:
        await conn.execute(
            """INSERT INTO realised_gains (account_id, symbol, sale_id, lot_id, acquired_on, sold_at, sold_on,
                                           quantity, proceeds, cost, gain, term, basis_known)
               SELECT a, s, i, l, d, $1, $2, q, p, c, p - c, t, l IS NOT NULL
               FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::date[], $8::text[]::numeric[],
                           $9::text[]::numeric[], $10::text[]::numeric[], $11::text[]) AS u(a, s, i, l, d, q, p, c, t)""",
            # decimals as text: asyncpg's binary numeric encoding costs more than PostgreSQL's parsing
            sold_at, sold_on, [s.account_id for s, _ in closed], [s.symbol for s, _ in closed],
            [s.sale_id for s, _ in closed], [c.lot_id for _, c in closed], [c.acquired for _, c in closed],
            [_text(c.quantity) for _, c in closed], [_text(c.proceeds) for _, c in closed],
            [_text(c.cost) for _, c in closed], [c.term for _, c in closed],
        )


async def flag_wash_sales(conn: asyncpg.Connection, pairs: Sequence[tuple[str, str]], days: int) -> int:
    """Flag the loss sales of these (account, symbol) pairs and of the pairs the staged fills
    buy (``fills_store.stage``) that have a purchase of the same security within ``days`` days
    before or after, other than a lot the sale itself closed. Returns how many rows were
    newly flagged."""
    # Driven by the pairs, index probes only: ``OFFSET 0`` and the scalar subquery keep the
    # planner from flattening them into joins, which it ran over every loss and every lot ever
    # recorded (a cost that grew with the book, not with the batch: a second per batch at a
    # million intents).
    result = await conn.execute(
        """UPDATE realised_gains SET wash_sale = true
           WHERE gain_id = ANY(ARRAY(
               SELECT g.gain_id
               FROM (SELECT * FROM unnest($1::text[], $2::text[]) AS p(a, s)
                     UNION SELECT account_id, symbol FROM batch_fills WHERE side = 'buy') AS p(a, s)
               CROSS JOIN LATERAL (SELECT gain_id, sale_id, sold_on FROM realised_gains
                                   WHERE account_id = p.a AND symbol = p.s AND gain < 0 AND NOT wash_sale
                                   OFFSET 0) g
               WHERE (SELECT true FROM lots l
                      WHERE l.account_id = p.a AND l.symbol = p.s
                        AND l.acquired_on BETWEEN g.sold_on - $3::int AND g.sold_on + $3::int
                        AND NOT EXISTS (SELECT 1 FROM realised_gains c
                                        WHERE c.sale_id = g.sale_id AND c.lot_id = l.lot_id)
                      LIMIT 1)))""",
        [a for a, _ in pairs], [s for _, s in pairs], days,
    )
    return int(result.split()[-1])


async def gains_of(conn: asyncpg.Connection, account_id: str, year: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT sale_id, symbol, quantity, acquired_on, sold_on, proceeds, cost, gain, term, wash_sale, basis_known
           FROM realised_gains WHERE account_id = $1 AND sold_on >= $2 AND sold_on < $3
           ORDER BY sold_at, sale_id, gain_id""",
        account_id, date(year, 1, 1), date(year + 1, 1, 1),
    )


async def sales_on(conn: asyncpg.Connection, day: date) -> list[asyncpg.Record]:
    """The day's sales per trade (account, symbol, window): proceeds and shares."""
    return await conn.fetch(
        """SELECT account_id, symbol, split_part(sale_id, ':', 1) AS window_id, sum(proceeds) AS proceeds,
                  sum(quantity) AS quantity
           FROM realised_gains WHERE sold_on = $1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        day,
    )


# ---------------------------------------------------------------- dividends


async def insert_dividend(conn: asyncpg.Connection, symbol: str, ex_date: date, pay_date: date,
                          per_share: Decimal, now: datetime) -> asyncpg.Record:
    """Store an announced dividend; returns the stored row (the earlier one when this
    security's dividend of that ex-date was announced before)."""
    await conn.execute(
        """INSERT INTO dividends (symbol, ex_date, pay_date, amount_per_share, announced_at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (symbol, ex_date) DO NOTHING""",
        symbol, ex_date, pay_date, per_share, now,
    )
    return await conn.fetchrow("SELECT * FROM dividends WHERE symbol = $1 AND ex_date = $2", symbol, ex_date)


async def due_dividends(conn: asyncpg.Connection, day: date) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT symbol, ex_date, pay_date, amount_per_share FROM dividends
           WHERE pay_date <= $1 AND paid_at IS NULL ORDER BY pay_date, symbol FOR UPDATE""", day)


async def holders_at(conn: asyncpg.Connection, symbol: str, before: datetime) -> dict[str, Decimal]:
    """Shares of ``symbol`` each customer held just before ``before``, from the journal."""
    rows = await conn.fetch(
        """SELECT split_part(p.book, ':', 2) AS account_id, sum(p.amount) AS quantity
           FROM postings p JOIN entries e ON e.entry_id = p.entry_id
           WHERE p.asset = $1 AND p.book LIKE 'customer:%:securities' AND e.booked_at < $2
           GROUP BY p.book HAVING sum(p.amount) > 0""",
        symbol, before,
    )
    return {r["account_id"]: r["quantity"] for r in rows}


async def mark_dividend_paid(conn: asyncpg.Connection, symbol: str, ex_date: date, entry_id: int | None,
                             now: datetime) -> None:
    await conn.execute("UPDATE dividends SET entry_id = $3, paid_at = $4 WHERE symbol = $1 AND ex_date = $2",
                       symbol, ex_date, entry_id, now)


# ---------------------------------------------------------------- the daily job


async def day_schedule_started(conn: asyncpg.Connection, today: date) -> date:
    """The day the schedule first ran (recorded on the first call): earlier days are not owed."""
    await conn.execute("INSERT INTO day_schedule (id, started_on) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", today)
    return await conn.fetchval("SELECT started_on FROM day_schedule WHERE id = 1")


async def days_run_since(conn: asyncpg.Connection, first: date) -> set[date]:
    return {r["day"] for r in await conn.fetch("SELECT day FROM days_run WHERE day >= $1", first)}


async def record_day_run(conn: asyncpg.Connection, day: date, now: datetime) -> None:
    await conn.execute("INSERT INTO days_run (day, ran_at) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING", day, now)


async def lock_day(conn: asyncpg.Connection) -> None:
    """One daily job at a time (the schedule and a command may run at once)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('m1.ledger.day'))")


async def record_day_values(conn: asyncpg.Connection, day: date, end: datetime) -> None:
    """Every account's cash and value (cash + positions at the last price published before
    ``end``) as of ``end``, the day's end, recorded as ``day``'s once: the balances now less
    what was booked at or after ``end`` (the job runs after the day ends, a catch-up days
    later). Positions without a price by then count at zero."""
    await conn.execute(
        """WITH late AS MATERIALIZED (
               SELECT p.book, p.asset, sum(p.amount) AS amount
               FROM entries e JOIN postings p USING (entry_id)
               WHERE e.booked_at >= $2 AND p.book LIKE 'customer:%' GROUP BY 1, 2),
           at_end AS (
               SELECT b.book, b.asset, b.amount - coalesce(l.amount, 0) AS amount
               FROM balances b LEFT JOIN late l USING (book, asset) WHERE b.book LIKE 'customer:%'),
           last AS MATERIALIZED (
               SELECT DISTINCT ON (symbol) symbol, price FROM prices WHERE as_of < $2 ORDER BY symbol, as_of DESC),
           held AS (
               SELECT split_part(b.book, ':', 2) AS account_id, sum(b.amount * l.price) AS value
               FROM at_end b JOIN last l ON l.symbol = b.asset
               WHERE b.book LIKE 'customer:%:securities' GROUP BY 1),
           cash AS (
               SELECT split_part(book, ':', 2) AS account_id, amount FROM at_end
               WHERE book LIKE 'customer:%:cash' AND asset = 'USD')
           INSERT INTO day_values (account_id, day, cash, value)
           SELECT a.account_id, $1, coalesce(c.amount, 0), coalesce(c.amount, 0) + coalesce(h.value, 0)
           FROM accounts a LEFT JOIN cash c USING (account_id) LEFT JOIN held h USING (account_id)
           ON CONFLICT (account_id, day) DO NOTHING""",
        day, end,
    )


async def positive_day_cash_of_plan(conn: asyncpg.Connection, day: date, plan: str) -> dict[str, Decimal]:
    """The accounts of ``plan`` whose cash at ``day``'s end (``day_values``) was above zero."""
    rows = await conn.fetch(
        """SELECT v.account_id, v.cash FROM day_values v JOIN accounts a USING (account_id)
           WHERE v.day = $1 AND a.plan = $2 AND v.cash > 0""",
        day, plan,
    )
    return {r["account_id"]: r["cash"] for r in rows}


async def insert_accruals(conn: asyncpg.Connection, day: date, rate: Decimal,
                          accruals: dict[str, tuple[Decimal, Decimal]]) -> int:
    """``accruals``: account -> (cash, interest). Once per account and day; returns how many
    were new."""
    if not accruals:
        return 0
    ids = sorted(accruals)
    result = await conn.execute(
        """INSERT INTO interest_accruals (account_id, day, cash, rate, amount)
           SELECT a, $1, c, $2, m FROM unnest($3::text[], $4::numeric[], $5::numeric[]) AS t(a, c, m)
           ON CONFLICT (account_id, day) DO NOTHING""",
        day, rate, ids, [accruals[a][0] for a in ids], [accruals[a][1] for a in ids],
    )
    return int(result.split()[-1])


async def month_values(conn: asyncpg.Connection, first: date, last: date) -> dict[str, list[Decimal]]:
    rows = await conn.fetch(
        "SELECT account_id, array_agg(value) AS v FROM day_values WHERE day BETWEEN $1 AND $2 GROUP BY account_id",
        first, last,
    )
    return {r["account_id"]: list(r["v"]) for r in rows}


async def month_accrued(conn: asyncpg.Connection, first: date, last: date) -> dict[str, Decimal]:
    rows = await conn.fetch(
        """SELECT account_id, sum(amount) AS amount FROM interest_accruals WHERE day BETWEEN $1 AND $2
           GROUP BY account_id""",
        first, last,
    )
    return {r["account_id"]: r["amount"] for r in rows}


async def entry_exists(conn: asyncpg.Connection, kind: str, reference: str) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM entries WHERE kind = $1 AND reference = $2",
                                    kind, reference))


def cash_books(account_ids: Iterable[str]) -> list[str]:
    return [cash_book(a) for a in account_ids]
