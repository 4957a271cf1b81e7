"""The market's SQL. Parameters only; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from services.market.domain import Listing, Quote
from shared.contracts import Execution, NetOrder


async def seed_prices(conn: asyncpg.Connection, listings: Sequence[Listing], now: datetime) -> int:
    """Load ``listings`` into an empty price table; a table that has any price is left alone.
    Returns how many prices were loaded."""
    rows = await conn.fetch(
        """INSERT INTO prices (symbol, name, price, updated_at)
           SELECT s, n, p, $4 FROM unnest($1::text[], $2::text[], $3::numeric[]) AS t(s, n, p)
           WHERE NOT EXISTS (SELECT 1 FROM prices)
           ON CONFLICT (symbol) DO NOTHING RETURNING symbol""",
        [x.symbol for x in listings], [x.name for x in listings], [x.price for x in listings], now,
    )
    return len(rows)


async def active_prices(conn: asyncpg.Connection) -> dict[str, Decimal]:
    rows = await conn.fetch("SELECT symbol, price FROM prices WHERE active ORDER BY symbol")
    return {r["symbol"]: r["price"] for r in rows}


async def set_prices(conn: asyncpg.Connection, prices: Mapping[str, Decimal], now: datetime) -> dict[str, Decimal]:
    """Upsert prices (a new symbol is listed as active). Returns the prices that changed, of
    active securities only: an inactive one keeps its price unpublished."""
    symbols = sorted(prices)
    rows = await conn.fetch(
        """WITH changed AS (
               INSERT INTO prices (symbol, price, updated_at)
               SELECT s, p, $3 FROM unnest($1::text[], $2::numeric[]) AS t(s, p)
               ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, updated_at = EXCLUDED.updated_at
               WHERE prices.price IS DISTINCT FROM EXCLUDED.price
               RETURNING symbol, price, active)
           SELECT symbol, price FROM changed WHERE active ORDER BY symbol""",
        symbols, [prices[s] for s in symbols], now,
    )
    return {r["symbol"]: r["price"] for r in rows}


async def set_active(conn: asyncpg.Connection, symbol: str, active: bool, now: datetime
                     ) -> tuple[asyncpg.Record | None, bool]:
    """Delist (``active`` false) or list again a known security: its row (None: unknown) and
    whether it changed."""
    row = await conn.fetchrow(
        """UPDATE prices SET active = $2, updated_at = $3 WHERE symbol = $1 AND active <> $2
           RETURNING symbol, price, active""", symbol, active, now)
    if row is not None:
        return row, True
    return await conn.fetchrow("SELECT symbol, price, active FROM prices WHERE symbol = $1", symbol), False


async def quotes(conn: asyncpg.Connection, symbols: Sequence[str]) -> dict[str, Quote]:
    rows = await conn.fetch("SELECT symbol, price, active FROM prices WHERE symbol = ANY($1::text[])", list(symbols))
    return {r["symbol"]: Quote(r["symbol"], r["price"], r["active"]) for r in rows}


async def executions_of(conn: asyncpg.Connection, window_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT symbol, side, quantity, price, amount, executed_at FROM executions
           WHERE window_id = $1 ORDER BY symbol""",
        window_id,
    )


async def insert_executions(conn: asyncpg.Connection, window_id: UUID,
                            filled: Sequence[tuple[NetOrder, Execution]], executed_at: datetime) -> None:
    """Store one window's (order, execution) pairs; the (window, symbol) key refuses a
    second execution of the same security in one window."""
    await conn.execute(
        """INSERT INTO executions (window_id, symbol, side, notional, quantity, price, amount, executed_at)
           SELECT $1, s, d, n, q, p, a, $8
           FROM unnest($2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::numeric[], $7::numeric[])
                AS t(s, d, n, q, p, a)""",
        window_id, [e.symbol for _, e in filled], [e.side.value for _, e in filled], [o.notional for o, _ in filled],
        [e.quantity for _, e in filled], [e.price for _, e in filled], [e.amount for _, e in filled], executed_at,
    )


async def halt(conn: asyncpg.Connection, symbol: str, reason: str, now: datetime) -> None:
    await conn.execute("""INSERT INTO halts (symbol, reason, halted_at) VALUES ($1, $2, $3)
                          ON CONFLICT (symbol) DO UPDATE SET reason = EXCLUDED.reason""", symbol, reason, now)


async def resume(conn: asyncpg.Connection, symbol: str) -> None:
    await conn.execute("DELETE FROM halts WHERE symbol = $1", symbol)


async def halts(conn: asyncpg.Connection) -> dict[str, str]:
    return {r["symbol"]: r["reason"] for r in await conn.fetch("SELECT symbol, reason FROM halts ORDER BY symbol")}


async def breakers_on(conn: asyncpg.Connection, day) -> list[int]:
    return [r["level"] for r in await conn.fetch("SELECT level FROM circuit_breakers WHERE day = $1", day)]


async def trip(conn: asyncpg.Connection, day, level: int, tripped_at: datetime, until: datetime) -> None:
    await conn.execute("""INSERT INTO circuit_breakers (day, level, tripped_at, until) VALUES ($1, $2, $3, $4)
                          ON CONFLICT (day, level) DO NOTHING""", day, level, tripped_at, until)


async def market_wide_halt(conn: asyncpg.Connection, now: datetime) -> asyncpg.Record | None:
    """The circuit breaker halting the market at ``now``, if any (the one ending last)."""
    return await conn.fetchrow(
        "SELECT level, until FROM circuit_breakers WHERE tripped_at <= $1 AND until > $1 ORDER BY until DESC LIMIT 1",
        now)


async def insert_halted(conn: asyncpg.Connection, window_id: UUID, halted: Mapping[str, str],
                        refused: Mapping[str, str] | None = None) -> None:
    refused = refused or {}
    symbols = sorted({*halted, *refused})
    await conn.execute(
        """INSERT INTO halted_orders (window_id, symbol, reason, refused)
           SELECT $1, s, r, f FROM unnest($2::text[], $3::text[], $4::bool[]) AS t(s, r, f)""",
        window_id, symbols, [refused.get(s) or halted[s] for s in symbols], [s in refused for s in symbols])


async def halted_of(conn: asyncpg.Connection, window_id: UUID, *, refused: bool = False) -> dict[str, str]:
    """The window's ordered securities the venue halted (or, with ``refused``, refused)."""
    rows = await conn.fetch("SELECT symbol, reason FROM halted_orders WHERE window_id = $1 AND refused = $2",
                            window_id, refused)
    return {r["symbol"]: r["reason"] for r in rows}


async def handled_window(conn: asyncpg.Connection, window_id: UUID) -> bool:
    """Whether the venue answered this window before (executed or halted anything)."""
    return bool(await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM executions WHERE window_id = $1)
                  OR EXISTS (SELECT 1 FROM halted_orders WHERE window_id = $1)""", window_id))
