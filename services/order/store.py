"""The order service's SQL. Parameters only; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def upsert_account(conn: asyncpg.Connection, account_id: str, kind: str, plan: str, opened_at: datetime) -> None:
    """Record an opened account. An account opens once: the same AccountOpened seen again
    (a replay under another message id) changes nothing."""
    await conn.execute(
        """INSERT INTO accounts (account_id, kind, plan, opened_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id) DO NOTHING""",
        account_id, kind, plan, opened_at,
    )

