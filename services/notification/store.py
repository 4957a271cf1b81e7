"""The notification service's SQL. Parameters only; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def add(conn: asyncpg.Connection, account_id: str, kind: str, message: str, data_json: str, cause_id: str,
              created_at: datetime) -> int | None:
    """Store a notification; None when one for the same cause is already stored."""
    return await conn.fetchval(
        """INSERT INTO feed (account_id, kind, message, data, cause_id, created_at)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)
           ON CONFLICT (cause_id) DO NOTHING RETURNING id""",
        account_id, kind, message, data_json, cause_id, created_at,
    )


async def feed(conn: asyncpg.Connection, account_id: str, since: datetime | None, limit: int) -> list[asyncpg.Record]:
    """The latest ``limit`` notifications created after ``since`` (all when None), oldest first."""
    return await conn.fetch(
        """SELECT id, kind, message, data::text AS data, cause_id, created_at FROM (
               SELECT * FROM feed WHERE account_id = $1 AND ($2::timestamptz IS NULL OR created_at > $2)
               ORDER BY id DESC LIMIT $3
           ) latest ORDER BY id""",
        account_id, since, limit,
    )
