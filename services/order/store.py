"""The order service's SQL. Parameters only; the caller owns the transaction.

Ledger events carry the account's ledger ``version`` after the change: a projection row keeps
the version it was last set from, and an older event changes nothing. Prices keep their time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

ORDER_COLUMNS = """order_id, account_id, symbol, side, amount, quantity, status, deposit_id, deposit_amount,
                   submitted, cancel_requested, cancel_attempts, filled_quantity, filled_amount, price, window_id, reason,
                   placed_at, updated_at, version,
                   final, intent_id, part, rest_amount, rest_quantity"""
# What ``update`` may set on an order.
UPDATABLE = frozenset({"status", "submitted", "cancel_requested", "cancel_attempts", "filled_quantity", "filled_amount", "price",
                       "window_id", "reason", "final", "intent_id", "part", "rest_amount", "rest_quantity"})


async def upsert_account(conn: asyncpg.Connection, account_id: str, kind: str, plan: str, opened_at: datetime) -> None:
    """Record an opened account. An account opens once: the same AccountOpened seen again
    (a replay under another message id) changes nothing."""
    await conn.execute(
        """INSERT INTO accounts (account_id, kind, plan, opened_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id) DO NOTHING""",
        account_id, kind, plan, opened_at,
    )


async def lock_account(conn: asyncpg.Connection, account_id: str) -> bool:
    """Lock the account's row (orders of one account are placed one at a time, so two never
    spend the same cash); False when the account is unknown."""
    return await conn.fetchval("SELECT true FROM accounts WHERE account_id = $1 FOR UPDATE", account_id) or False


async def account_exists(conn: asyncpg.Connection, account_id: str) -> bool:
    return await conn.fetchval("SELECT true FROM accounts WHERE account_id = $1", account_id) or False


# ---------------------------------------------------------------- projections


async def set_cash(conn: asyncpg.Connection, account_id: str, cash: Decimal, version: int) -> None:
    await conn.execute(
        """INSERT INTO cash (account_id, cash, version) VALUES ($1, $2, $3)
           ON CONFLICT (account_id) DO UPDATE SET cash = EXCLUDED.cash, version = EXCLUDED.version
           WHERE cash.version < EXCLUDED.version""",
        account_id, cash, version,
    )


async def set_positions(conn: asyncpg.Connection, account_id: str, quantities: dict[str, Decimal],
                        version: int) -> None:
    """Take the ledger's quantities at ``version`` unless newer ones are here (one statement).
    A sold-out position stays as a zero row so that its version still guards it."""
    symbols = sorted(quantities)
    await conn.execute(
        """INSERT INTO positions (account_id, symbol, quantity, version)
           SELECT $1, s, q, $4 FROM unnest($2::text[], $3::numeric[]) AS t(s, q)
           ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity, version = EXCLUDED.version
           WHERE positions.version < EXCLUDED.version""",
        account_id, symbols, [quantities[s] for s in symbols], version,
    )


async def set_prices(conn: asyncpg.Connection, prices: dict[str, Decimal], as_of: datetime) -> None:
    symbols = sorted(prices)
    await conn.execute(
        """INSERT INTO prices (symbol, price, as_of)
           SELECT s, p, $3::timestamptz FROM unnest($1::text[], $2::numeric[]) AS t(s, p)
           ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, as_of = EXCLUDED.as_of
           WHERE prices.as_of <= EXCLUDED.as_of""",
        symbols, [prices[s] for s in symbols], as_of,
    )


async def set_pie(conn: asyncpg.Connection, account_id: str, name: str, symbols: list[str], now: datetime,
                  version: int | None = None) -> None:
    """Keep the account's pie securities; a change older than the one held (by ``version``)
    is ignored. A change without a version is taken as it comes."""
    await conn.execute(
        """INSERT INTO pies (account_id, name, symbols, updated_at, version) VALUES ($1, $2, $3, $4, coalesce($5, 0))
           ON CONFLICT (account_id) DO UPDATE SET name = $2, symbols = $3, updated_at = $4,
                                                  version = coalesce($5, pies.version)
           WHERE $5::bigint IS NULL OR pies.version < $5""",
        account_id, name, symbols, now, version,
    )


async def snapshot(conn: asyncpg.Connection, account_id: str, symbol: str) -> asyncpg.Record:
    """What validating an order of the account in ``symbol`` reads: cash, shares held, the
    pie's securities (NULL without a pie)."""
    return await conn.fetchrow(
        """SELECT coalesce((SELECT cash FROM cash WHERE account_id = $1), 0) AS cash,
                  coalesce((SELECT quantity FROM positions WHERE account_id = $1 AND symbol = $2), 0) AS held,
                  (SELECT symbols FROM pies WHERE account_id = $1) AS pie_symbols""",
        account_id, symbol,
    )


async def prices_of(conn: asyncpg.Connection, symbols: Sequence[str]) -> dict[str, Decimal]:
    rows = await conn.fetch("SELECT symbol, price FROM prices WHERE symbol = ANY($1::text[])", list(symbols))
    return {r["symbol"]: r["price"] for r in rows}


# ---------------------------------------------------------------- deposits


async def record_deposit(conn: asyncpg.Connection, deposit_id: UUID, account_id: str, status: str,
                         reason: str | None, at: datetime) -> None:
    await conn.execute(
        """INSERT INTO deposits (deposit_id, account_id, status, reason, at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (deposit_id) DO NOTHING""",
        deposit_id, account_id, status, reason, at,
    )


async def deposit(conn: asyncpg.Connection, deposit_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT account_id, status, reason FROM deposits WHERE deposit_id = $1", deposit_id)


# ---------------------------------------------------------------- orders


async def insert_order(conn: asyncpg.Connection, order_id: UUID, account_id: str, symbol: str, side: str,
                       amount: Decimal | None, quantity: Decimal | None, deposit_id: UUID | None,
                       deposit_amount: Decimal | None, submitted: bool, now: datetime) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO orders (order_id, account_id, symbol, side, amount, quantity, status, deposit_id,
                                deposit_amount, submitted, placed_at, updated_at, intent_id, rest_amount,
                                rest_quantity)
            VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $10, $1, $5, $6)
            RETURNING {ORDER_COLUMNS}""",
        order_id, account_id, symbol, side, amount, quantity, deposit_id, deposit_amount, submitted, now,
    )


async def order(conn: asyncpg.Connection, order_id: UUID, *, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1" + (" FOR UPDATE" if lock else ""), order_id)


async def open_orders(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    """The account's open orders (not final), with whether their deposit is still to be
    booked."""
    return await conn.fetch(
        f"""SELECT {", ".join("o." + c.strip() for c in ORDER_COLUMNS.split(","))},
                   (o.deposit_id IS NOT NULL AND d.deposit_id IS NULL) AS deposit_unbooked
            FROM orders o LEFT JOIN deposits d ON d.deposit_id = o.deposit_id
            WHERE o.account_id = $1 AND NOT o.final
            ORDER BY o.placed_at, o.order_id""",
        account_id,
    )


async def lock_open(conn: asyncpg.Connection, intent_ids: Sequence[UUID],
                    account_id: str | None = None) -> list[asyncpg.Record]:
    """Lock the open orders whose current intent is among ``intent_ids`` (of ``account_id``
    when given), in id order. An earlier part's intent finds nothing."""
    return await conn.fetch(
        f"""SELECT {ORDER_COLUMNS} FROM orders
            WHERE intent_id = ANY($1::uuid[]) AND NOT final
              AND ($2::text IS NULL OR account_id = $2)
            ORDER BY order_id FOR UPDATE""",
        list(intent_ids), account_id,
    )


async def lock_waiting_for(conn: asyncpg.Connection, deposit_id: UUID) -> list[asyncpg.Record]:
    """Lock the open orders still waiting for this deposit (not yet sent to the window)."""
    return await conn.fetch(
        f"""SELECT {ORDER_COLUMNS} FROM orders
            WHERE deposit_id = $1 AND status = 'pending' AND NOT submitted AND NOT final
            ORDER BY order_id FOR UPDATE""",
        deposit_id,
    )


async def update(conn: asyncpg.Connection, order_id: UUID, now: datetime, **fields) -> asyncpg.Record:
    """Set ``fields`` (columns of ``UPDATABLE``) on the order and count a new version."""
    if unknown := set(fields) - UPDATABLE:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    names = sorted(fields)
    sets = ", ".join(f"{n} = ${i + 3}" for i, n in enumerate(names))
    return await conn.fetchrow(
        f"""UPDATE orders SET {sets}, updated_at = $2, version = version + 1 WHERE order_id = $1
            RETURNING {ORDER_COLUMNS}""",
        order_id, now, *(fields[n] for n in names),
    )


async def orders_of(conn: asyncpg.Connection, account_id: str, limit: int) -> list[asyncpg.Record]:
    """The account's latest ``limit`` orders, oldest first."""
    return await conn.fetch(
        f"""SELECT * FROM (SELECT {ORDER_COLUMNS} FROM orders WHERE account_id = $1
                           ORDER BY placed_at DESC, order_id DESC LIMIT $2) latest
            ORDER BY placed_at, order_id""",
        account_id, limit,
    )
