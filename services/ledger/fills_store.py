"""SQL of a window's fills booking, set-based over a batch's rows.

A batch of 2,000 accounts is some 20,000 fills: they are staged once from the message's JSON
(read by PostgreSQL) and every statement here writes all its rows in one go, so the ledger's
Python never builds an object per fill. ``domain.fills`` and
``domain.fills_batch`` are the reference for the postings (tests compare them)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from uuid import UUID

import asyncpg

from services.ledger.domain import RESIDUE, STREET, USD
from shared.contracts import Execution, Fill, Residue


def fills_json(rows: Sequence[tuple]) -> str:
    """Fill rows (``FILL_ROW`` order) as the JSON ``stage`` reads: ``{"fills": [[...], ...]}``."""
    return json.dumps({"fills": [[str(i), a, s, str(d), str(q), str(m), str(p)] for i, a, s, d, q, m, p in rows]})


def rows_of(fills: Sequence[Fill]) -> list[tuple]:
    """Fills as rows in ``FILL_ROW`` order, decimals as text."""
    return [(f.intent_id, f.account_id, f.symbol, f.side.value, format(f.quantity, "f"), format(f.amount, "f"),
             format(f.price, "f")) for f in fills]


async def stage(conn: asyncpg.Connection, fills: str | bytes) -> None:
    """Put a batch's fills in a temporary table for the rest of the transaction
    (``batch_fills``), so that every statement of the booking reads them from there.
    ``fills`` is JSON whose ``fills`` are rows in ``FILL_ROW`` order: a ``window.fills.batch``
    body as it arrived (validated against its contract), which PostgreSQL reads itself, or
    ``fills_json``. The ledger's Python never encodes a value per fill."""
    await conn.execute(
        """CREATE TEMPORARY TABLE batch_fills (intent_id uuid, account_id text, symbol text, side text,
                                               quantity numeric, amount numeric, price numeric, seq bigint)
           ON COMMIT DROP""")
    await conn.execute(
        """INSERT INTO batch_fills
           SELECT (r->>0)::uuid, r->>1, r->>2, r->>3, (r->>4)::numeric, (r->>5)::numeric, (r->>6)::numeric, seq
           FROM json_array_elements($1::json -> 'fills') WITH ORDINALITY AS t(r, seq)""",
        fills.decode() if isinstance(fills, bytes) else fills)


async def staged_repeat_sales(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The staged sells of shares whose (account, security) has more than one sell in the
    batch (``close_single_sales`` takes the others), in the message's order."""
    return await conn.fetch(
        """SELECT intent_id, account_id, symbol, quantity, amount, price
           FROM (SELECT *, count(*) OVER (PARTITION BY account_id, symbol) AS sells
                 FROM batch_fills WHERE side = 'sell' AND quantity > 0) x
           WHERE sells > 1 ORDER BY seq""")


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
                 -- in key order of postings_book: the legs come out of hash aggregates in no
                 -- order (docs/benchmarks.md, tenth session)
                 posted AS (INSERT INTO postings (entry_id, book, asset, amount)
                            SELECT $1, book, asset, amount FROM every_leg WHERE amount <> 0
                            ORDER BY book, asset
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


async def close_single_sales(conn: asyncpg.Connection, window_id: UUID, sold_at: datetime, sold_on: date
                             ) -> list[tuple[str, str]]:
    """Close the lots of the staged sells that are alone on their (account, security) in the
    batch, set-based, and record their realised gains; returns the (account, symbol) pairs
    that realised a loss (for the wash-sale check). ``lots.close_lots`` is the reference (a
    test compares them): the open lots in the tax-minimising order (``lots.selection_key``:
    category, gain per share, acquired, lot id) closed up to the quantity sold, a lot closed
    in part giving up its cost pro rata (cents, half even), shares beyond the lots recorded
    at an unknown (zero) cost, the proceeds shared pro rata with the last part taking the
    remainder. Divisions carry 30 decimals, more than the reference's 28 digits, so that
    both round the same exact quotients. Several sells of one pair in one batch (each sees
    what the one before left) stay with the Python reference."""
    rows = await conn.fetch(
        """WITH s AS (SELECT intent_id, account_id, symbol, quantity AS q, amount AS p, price
                      FROM (SELECT *, count(*) OVER (PARTITION BY account_id, symbol) AS n
                            FROM batch_fills WHERE side = 'sell' AND quantity > 0) x
                      WHERE n = 1),
                l AS (SELECT s.*, lot.lot_id, lot.acquired_on, lot.remaining, lot.remaining_cost,
                             $3::date > (lot.acquired_on + interval '1 year')::date AS long,
                             s.price - lot.remaining_cost::numeric(60, 30) / lot.remaining AS per_share
                      FROM s CROSS JOIN LATERAL (
                          SELECT lot_id, acquired_on, remaining, remaining_cost FROM lots
                          WHERE account_id = s.account_id AND symbol = s.symbol AND remaining > 0
                          FOR UPDATE) lot),
                k AS (SELECT l.*,
                             CASE WHEN per_share < 0 THEN CASE WHEN long THEN 1 ELSE 0 END
                                  WHEN per_share = 0 THEN CASE WHEN long THEN 3 ELSE 2 END
                                  ELSE CASE WHEN long THEN 4 ELSE 5 END END AS category
                      FROM l),
                c AS (SELECT k.*,
                             coalesce(sum(remaining) OVER w, 0) AS before,
                             row_number() OVER (PARTITION BY intent_id
                                                ORDER BY category, per_share, acquired_on, lot_id) AS pos
                      FROM k
                      WINDOW w AS (PARTITION BY intent_id ORDER BY category, per_share, acquired_on, lot_id
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)),
                taken AS (SELECT c.*, least(remaining, q - before) AS take FROM c WHERE q - before > 0),
                parts AS (
                    SELECT intent_id, account_id, symbol, q, p, lot_id, acquired_on, take, pos,
                           CASE WHEN take = remaining THEN remaining_cost
                                ELSE cents_half_even((remaining_cost * take)::numeric(60, 30) / remaining)
                           END AS cost,
                           CASE WHEN long THEN 'long' ELSE 'short' END AS term
                    FROM taken
                    UNION ALL
                    SELECT s.intent_id, s.account_id, s.symbol, s.q, s.p, NULL, NULL, s.q - coalesce(t.total, 0),
                           2147483647, 0.00, 'short'
                    FROM s LEFT JOIN (SELECT intent_id, sum(take) AS total FROM taken GROUP BY intent_id) t
                         USING (intent_id)
                    WHERE s.q - coalesce(t.total, 0) > 0),
                shared AS (SELECT parts.*,
                                  CASE WHEN pos < max(pos) OVER (PARTITION BY intent_id)
                                       THEN cents_half_even((p * take)::numeric(60, 30) / q) END AS share
                           FROM parts),
                closed AS (SELECT shared.*,
                                  coalesce(share, p - coalesce(sum(share) OVER (PARTITION BY intent_id), 0))
                                      AS proceeds
                           FROM shared),
                moved AS (UPDATE lots SET remaining = lots.remaining - closed.take,
                                          remaining_cost = lots.remaining_cost - closed.cost
                          FROM closed WHERE lots.lot_id = closed.lot_id),
                gains AS (INSERT INTO realised_gains (account_id, symbol, sale_id, lot_id, acquired_on, sold_at,
                                                      sold_on, quantity, proceeds, cost, gain, term, basis_known)
                          SELECT account_id, symbol, $1 || ':' || intent_id, lot_id, acquired_on, $2, $3, take,
                                 proceeds, cost, proceeds - cost, term, lot_id IS NOT NULL
                          FROM closed ORDER BY account_id, intent_id, pos)
           SELECT DISTINCT account_id, symbol FROM closed WHERE proceeds < cost ORDER BY account_id, symbol""",
        str(window_id), sold_at, sold_on)
    return [(r["account_id"], r["symbol"]) for r in rows]
