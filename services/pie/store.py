"""The pie service's SQL. Parameters only; the caller owns the transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from shared.contracts import Fill


async def open_account(conn: asyncpg.Connection, account_id: str, kind: str, plan: str, opened_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO accounts (account_id, kind, plan, opened_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id) DO UPDATE SET kind = EXCLUDED.kind, plan = EXCLUDED.plan,
                                                  opened_at = EXCLUDED.opened_at""",
        account_id, kind, plan, opened_at,
    )


async def lock_account(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record:
    """The account's row, locked for this transaction. Any ledger event proves the account
    exists, so a row is created if the ledger's AccountOpened has not arrived yet."""
    await conn.execute("INSERT INTO accounts (account_id) VALUES ($1) ON CONFLICT (account_id) DO NOTHING", account_id)
    return await conn.fetchrow(
        "SELECT account_id, cash, version, auto_invest, minimum_cash FROM accounts WHERE account_id = $1 FOR UPDATE",
        account_id,
    )


async def get_account(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT account_id, cash, version, auto_invest, minimum_cash FROM accounts WHERE account_id = $1", account_id
    )


async def apply_cash(conn: asyncpg.Connection, account_id: str, cash: Decimal, version: int) -> bool:
    """Take the ledger's cash as of ``version`` unless a newer or equal version is stored."""
    row = await conn.fetchrow(
        "UPDATE accounts SET cash = $2, version = $3 WHERE account_id = $1 AND version < $3 RETURNING account_id",
        account_id, cash, version,
    )
    return row is not None


async def apply_position(conn: asyncpg.Connection, account_id: str, symbol: str, quantity: Decimal,
                         version: int) -> None:
    await conn.execute(
        """INSERT INTO positions (account_id, symbol, quantity, version) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity, version = EXCLUDED.version
           WHERE positions.version < EXCLUDED.version""",
        account_id, symbol, quantity, version,
    )


async def apply_positions(conn: asyncpg.Connection, account_id: str, positions: Mapping[str, Decimal],
                          version: int) -> None:
    """The account's complete positions as of ``version``: listed symbols take their quantity,
    every other symbol held goes to zero; rows already at a newer version stay."""
    symbols = sorted(positions)
    await conn.execute(
        """INSERT INTO positions (account_id, symbol, quantity, version)
           SELECT $1, s, q, $4 FROM unnest($2::text[], $3::numeric[]) AS t(s, q) ORDER BY s
           ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity, version = EXCLUDED.version
           WHERE positions.version < EXCLUDED.version""",
        account_id, symbols, [positions[s] for s in symbols], version,
    )
    await conn.execute(
        """UPDATE positions SET quantity = 0, version = $3
           WHERE account_id = $1 AND symbol <> ALL($2::text[]) AND version < $3""",
        account_id, symbols, version,
    )


async def apply_prices(conn: asyncpg.Connection, prices: Mapping[str, Decimal], as_of: datetime) -> None:
    """Take each price unless a later one is already stored."""
    symbols = sorted(prices)
    await conn.execute(
        """INSERT INTO prices (symbol, price, as_of)
           SELECT s, p, $3 FROM unnest($1::text[], $2::numeric[]) AS t(s, p) ORDER BY s
           ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, as_of = EXCLUDED.as_of
           WHERE prices.as_of <= EXCLUDED.as_of""",
        symbols, [prices[s] for s in symbols], as_of,
    )


async def prices_of(conn: asyncpg.Connection, symbols: Sequence[str]) -> dict[str, Decimal]:
    rows = await conn.fetch("SELECT symbol, price FROM prices WHERE symbol = ANY($1::text[])", list(symbols))
    return {r["symbol"]: r["price"] for r in rows}


async def set_pie(conn: asyncpg.Connection, account_id: str, name: str, tree_json: str, set_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO pies (account_id, name, tree, set_at) VALUES ($1, $2, $3::jsonb, $4)
           ON CONFLICT (account_id) DO UPDATE SET name = EXCLUDED.name, tree = EXCLUDED.tree, set_at = EXCLUDED.set_at""",
        account_id, name, tree_json, set_at,
    )


async def pie_json(conn: asyncpg.Connection, account_id: str) -> str | None:
    """The account's pie tree as JSON text, or None when no pie is set."""
    return await conn.fetchval("SELECT tree::text FROM pies WHERE account_id = $1", account_id)


async def pending_buys(conn: asyncpg.Connection, account_id: str) -> Decimal:
    return await conn.fetchval(
        """SELECT coalesce(sum(amount), 0.00)::numeric(16, 2) FROM intents
           WHERE account_id = $1 AND status = 'pending' AND side = 'buy'""",
        account_id,
    )


@dataclass(frozen=True)
class NewIntent:
    intent_id: UUID
    path: str
    symbol: str
    side: str
    amount: Decimal
    source: str


async def insert_intents(conn: asyncpg.Connection, account_id: str, batch_id: UUID, intents: Sequence[NewIntent],
                         created_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO intents (intent_id, batch_id, account_id, path, symbol, side, amount, source, created_at)
           SELECT i, $1, $2, p, s, d, a, o, $9
           FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::numeric[], $8::text[])
                AS t(i, p, s, d, a, o)""",
        batch_id, account_id, [i.intent_id for i in intents], [i.path for i in intents],
        [i.symbol for i in intents], [i.side for i in intents], [i.amount for i in intents],
        [i.source for i in intents], created_at,
    )


async def book_fills(conn: asyncpg.Connection, account_id: str, window_id: UUID, fills: Sequence[Fill],
                     filled_at: datetime) -> int:
    """Mark this service's pending intents among ``fills`` filled and add what they bought
    (or sold) to their slices' holdings. Intents already filled, or not ours, are skipped,
    so a replay changes nothing. Returns how many intents were marked filled."""
    return await conn.fetchval(
        """WITH f AS (
               SELECT * FROM unnest($2::uuid[], $3::text[], $4::numeric[], $5::numeric[])
                   AS t(intent_id, side, quantity, amount)
           ), done AS (
               UPDATE intents i SET status = 'filled', filled_at = $6, window_id = $7
               FROM f WHERE i.intent_id = f.intent_id AND i.account_id = $1 AND i.status = 'pending'
               RETURNING i.intent_id, i.path, i.symbol
           ), moved AS (
               SELECT d.path, d.symbol,
                      sum(CASE WHEN f.side = 'buy' THEN f.quantity ELSE -f.quantity END) AS quantity,
                      sum(CASE WHEN f.side = 'buy' THEN f.amount ELSE -f.amount END) AS cost
               FROM done d JOIN f USING (intent_id) GROUP BY d.path, d.symbol
           ), held AS (
               INSERT INTO slice_holdings (account_id, path, symbol, quantity, cost)
               SELECT $1, path, symbol, quantity, cost FROM moved ORDER BY path
               ON CONFLICT (account_id, path) DO UPDATE
                   SET quantity = slice_holdings.quantity + EXCLUDED.quantity,
                       cost = slice_holdings.cost + EXCLUDED.cost
               RETURNING path
           )
           SELECT count(*) FROM done""",
        account_id, [f.intent_id for f in fills], [f.side.value for f in fills], [f.quantity for f in fills],
        [f.amount for f in fills], filled_at, window_id,
    )


@dataclass(frozen=True)
class Snapshot:
    """What the portfolio view needs, read at one instant."""

    cash: Decimal
    tree_json: str | None
    pending_buys: Decimal
    holdings: dict[str, Decimal]  # by slice path
    prices: dict[str, Decimal]  # of the symbols held


async def snapshot(conn: asyncpg.Connection, account_id: str) -> Snapshot | None:
    """One statement, so cash, pending buys and holdings come from the same snapshot (a fill
    booked meanwhile moves all three at once or none). None for an unknown account."""
    row = await conn.fetchrow(
        """SELECT a.cash,
                  (SELECT tree::text FROM pies WHERE account_id = a.account_id) AS tree,
                  (SELECT coalesce(sum(amount), 0.00)::numeric(16, 2) FROM intents
                   WHERE account_id = a.account_id AND status = 'pending' AND side = 'buy') AS pending_buys,
                  (SELECT coalesce(json_agg(json_build_object('path', h.path, 'symbol', h.symbol,
                                                              'quantity', h.quantity::text, 'price', p.price::text)),
                                   '[]')::text
                   FROM slice_holdings h LEFT JOIN prices p USING (symbol)
                   WHERE h.account_id = a.account_id) AS holdings
           FROM accounts a WHERE a.account_id = $1""",
        account_id,
    )
    if row is None:
        return None
    held = json.loads(row["holdings"])
    return Snapshot(row["cash"], row["tree"], row["pending_buys"],
                    holdings={h["path"]: Decimal(h["quantity"]) for h in held},
                    prices={h["symbol"]: Decimal(h["price"]) for h in held if h["price"] is not None})
