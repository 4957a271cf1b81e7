"""SQL of a window's fills booking, set-based over a batch's rows.

A batch of 2,000 accounts is some 20,000 fills: every statement here takes them as parallel
arrays (one per column, decimals as text, parsed once by PostgreSQL) and writes all rows in
one statement, so the ledger's Python never builds an object per fill. ``domain.fills`` and
``domain.fills_batch`` are the reference for the postings (tests compare them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

import asyncpg

from services.ledger.domain import RESIDUE, STREET, USD
from shared.contracts import Execution, Fill, Residue


@dataclass(frozen=True)
class FillColumns:
    """A batch's fills as columns (row i across all lists), decimals as text."""

    intent_ids: list[UUID]
    accounts: list[str]
    symbols: list[str]
    sides: list[str]
    quantities: list[str]
    amounts: list[str]
    prices: list[str]

    @classmethod
    def of_rows(cls, rows: Sequence[tuple]) -> FillColumns:
        """From ``FillsBatch`` rows (``FILL_ROW`` order)."""
        if not rows:
            return cls([], [], [], [], [], [], [])
        ids, accounts, symbols, sides, quantities, amounts, prices = (list(c) for c in zip(*rows))
        return cls(ids, accounts, symbols, [str(s) for s in sides], quantities, amounts, prices)

    @classmethod
    def of_fills(cls, fills: Sequence[Fill]) -> FillColumns:
        return cls.of_rows([(f.intent_id, f.account_id, f.symbol, f.side.value, format(f.quantity, "f"),
                             format(f.amount, "f"), format(f.price, "f")) for f in fills])

    def __len__(self) -> int:
        return len(self.intent_ids)


async def stage(conn: asyncpg.Connection, fills: FillColumns) -> None:
    """Put the batch's fills in a temporary table for the rest of the transaction
    (``batch_fills``), so that every statement of the booking reads them from there: the
    columns are encoded and sent once, not once per statement."""
    await conn.execute(
        """CREATE TEMPORARY TABLE batch_fills (intent_id uuid, account_id text, symbol text, side text,
                                               quantity numeric, amount numeric, price numeric) ON COMMIT DROP""")
    await conn.execute(
        """INSERT INTO batch_fills
           SELECT i, a, s, d, q::numeric, m::numeric, p::numeric
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                AS t(i, a, s, d, q, m, p)""",
        fills.intent_ids, fills.accounts, fills.symbols, fills.sides, fills.quantities, fills.amounts, fills.prices)


_FILLS = """f AS (SELECT account_id AS a, symbol AS s, side AS d, quantity AS q, amount AS m FROM batch_fills)"""


async def insert_postings(conn: asyncpg.Connection, entry_id: int, executions: Sequence[Execution],
                          residues: Sequence[Residue], clearing: str | None) -> None:
    """The entry's postings for the staged fills (``stage``), and the customer balances moved
    by them, in one statement.

    Per account one cash leg (the sum of its fills) and one securities leg per security; the
    street's legs per execution, the firm's residue legs, and, with ``clearing``, per asset the
    leg to the window's clearing book that makes the entry balance (``domain.fills_batch``).
    Without it the entry must balance by itself (the trigger refuses it otherwise)."""
    await conn.execute(
        f"""WITH {_FILLS},
                 x AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS t(s, d, q, m)),
                 r AS (SELECT * FROM unnest($6::text[], $7::text[], $8::text[]) AS t(s, q, m)),
                 legs AS (
                     SELECT 'customer:' || a || ':cash' AS book, '{USD}' AS asset,
                            sum(CASE d WHEN 'buy' THEN -m ELSE m END) AS amount FROM f GROUP BY a
                     UNION ALL
                     SELECT 'customer:' || a || ':securities', s, sum(CASE d WHEN 'buy' THEN q ELSE -q END)
                     FROM f GROUP BY a, s
                     UNION ALL
                     SELECT '{STREET}', '{USD}', sum(CASE d WHEN 'buy' THEN m::numeric ELSE -m::numeric END) FROM x
                     UNION ALL
                     SELECT '{STREET}', s, sum(CASE d WHEN 'buy' THEN -q::numeric ELSE q::numeric END) FROM x GROUP BY s
                     UNION ALL
                     SELECT '{RESIDUE}', '{USD}', sum(m::numeric) FROM r
                     UNION ALL
                     SELECT '{RESIDUE}', s, sum(q::numeric) FROM r GROUP BY s),
                 every_leg AS (SELECT * FROM legs
                               UNION ALL
                               SELECT $9::text, asset, -sum(amount) FROM legs WHERE $9::text IS NOT NULL
                               GROUP BY asset),
                 posted AS (INSERT INTO postings (entry_id, book, asset, amount)
                            SELECT $1, book, asset, amount FROM every_leg WHERE amount <> 0
                            RETURNING book, asset, amount)
            INSERT INTO balances (book, asset, amount)
            SELECT book, asset, amount FROM posted WHERE book NOT LIKE 'firm:%' ORDER BY book, asset
            ON CONFLICT (book, asset) DO UPDATE SET amount = balances.amount + EXCLUDED.amount""",
        entry_id, [e.symbol for e in executions], [e.side.value for e in executions],
        [format(e.quantity, "f") for e in executions], [format(e.amount, "f") for e in executions],
        [r.symbol for r in residues], [format(r.quantity, "f") for r in residues],
        [format(r.amount, "f") for r in residues], clearing)


async def insert_trades(conn: asyncpg.Connection, entry_id: int, window_id: UUID, booked_at: datetime,
                        settles_on: date) -> None:
    """One trade row per staged fill of the entry, with the date its cash settles."""
    await conn.execute(
        """INSERT INTO trades (entry_id, window_id, account_id, symbol, side, quantity, amount, booked_at, settles_on)
           SELECT $1, $2, account_id, symbol, side, quantity, amount, $3, $4 FROM batch_fills""",
        entry_id, str(window_id), booked_at, settles_on)


async def insert_buy_lots(conn: asyncpg.Connection, window_id: UUID, acquired_at: datetime,
                          acquired_on: date) -> None:
    """A tax lot per staged buy fill of shares: its quantity, at the amount paid."""
    await conn.execute(
        """INSERT INTO lots (account_id, symbol, window_id, intent_id, acquired_at, acquired_on, quantity, cost,
                             remaining, remaining_cost)
           SELECT account_id, symbol, $1, intent_id, $2, $3, quantity, amount, quantity, amount
           FROM batch_fills WHERE side = 'buy' AND quantity > 0""",
        str(window_id), acquired_at, acquired_on)


async def fills_booked_json(conn: asyncpg.Connection, window_id: UUID, batch: int, booked_at: datetime) -> str:
    """Bump the version of every account of the staged fills and build the batch's
    ``ledger.fills.booked`` body: per account (in account order) its fills, its cash and
    complete positions after them, and its new version. Built by PostgreSQL from the rows
    just booked: no model per fill or per account in Python."""
    return await conn.fetchval(
        """WITH v AS (UPDATE accounts SET version = version + 1
                      FROM (SELECT DISTINCT account_id AS a FROM batch_fills) u
                      WHERE account_id = u.a RETURNING account_id, version),
                f AS (SELECT account_id AS a,
                             json_agg(json_build_object('intent_id', intent_id, 'account_id', account_id,
                                                        'symbol', symbol, 'side', side, 'quantity', quantity::text,
                                                        'amount', amount::text, 'price', price::text)
                                      ORDER BY intent_id) AS fills
                      FROM batch_fills GROUP BY account_id)
           SELECT json_build_object(
               'window_id', $1::uuid, 'batch', $2::int, 'booked_at', $3::timestamptz,
               'accounts', coalesce(json_agg(json_build_object(
                   'account_id', v.account_id, 'window_id', $1::uuid, 'fills', f.fills,
                   'cash', coalesce(c.amount, 0)::numeric(16, 2)::text,
                   'positions', coalesce(pos.held, '{}'::json), 'version', v.version,
                   'booked_at', $3::timestamptz) ORDER BY v.account_id), '[]'::json))::text
           FROM v JOIN f ON f.a = v.account_id
           LEFT JOIN balances c ON c.book = 'customer:' || v.account_id || ':cash' AND c.asset = 'USD'
           LEFT JOIN LATERAL (SELECT json_object_agg(b.asset, b.amount::text ORDER BY b.asset) AS held
                              FROM balances b
                              WHERE b.book = 'customer:' || v.account_id || ':securities' AND b.amount <> 0) pos
                  ON true""",
        window_id, batch, booked_at)
