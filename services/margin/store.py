"""The margin service's SQL. Parameters only; the caller owns the transaction.

Ledger events carry the account's ledger ``version`` after the change. A row keeps the
version it was last set from, and an event whose version is not newer changes nothing, so a
redelivered or reordered event never puts an old balance back.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import asyncpg


async def open_account(conn: asyncpg.Connection, account_id: str, kind: str, plan: str) -> None:
    """Set the account's kind and plan. Cash may have arrived first (a redelivery reorders
    events), so the row may already exist without them."""
    await conn.execute(
        """INSERT INTO accounts (account_id, kind, plan) VALUES ($1, $2, $3)
           ON CONFLICT (account_id) DO UPDATE SET kind = EXCLUDED.kind, plan = EXCLUDED.plan
           WHERE accounts.kind IS NULL""",
        account_id, kind, plan,
    )


async def set_cash(conn: asyncpg.Connection, account_id: str, cash: Decimal, version: int) -> None:
    """Take the ledger's cash balance at ``version`` unless a newer one is already here."""
    await conn.execute(
        """INSERT INTO accounts (account_id, cash, version) VALUES ($1, $2, $3)
           ON CONFLICT (account_id) DO UPDATE SET cash = EXCLUDED.cash, version = EXCLUDED.version
           WHERE accounts.version < EXCLUDED.version""",
        account_id, cash, version,
    )


async def set_position(conn: asyncpg.Connection, account_id: str, symbol: str, quantity: Decimal,
                       version: int) -> None:
    """Take the ledger's quantity of one security at ``version`` unless a newer one is already
    here. A position sold out stays as a zero row so that its version still guards it."""
    await conn.execute(
        """INSERT INTO positions (account_id, symbol, quantity, version) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity, version = EXCLUDED.version
           WHERE positions.version < EXCLUDED.version""",
        account_id, symbol, quantity, version,
    )


async def set_prices(conn: asyncpg.Connection, prices: dict[str, Decimal], as_of: datetime) -> None:
    """Upsert a batch of prices in one statement; a price older than the stored one is kept out."""
    symbols = sorted(prices)
    await conn.execute(
        """INSERT INTO prices (symbol, price, as_of)
           SELECT s, p, $3::timestamptz FROM unnest($1::text[], $2::numeric[]) AS t(s, p)
           ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, as_of = EXCLUDED.as_of
           WHERE prices.as_of <= EXCLUDED.as_of""",
        symbols, [prices[s] for s in symbols], as_of,
    )
