"""The notification service's SQL. Parameters only; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

import asyncpg


# Woken after a commit that added deliveries (PostgreSQL delivers NOTIFY on commit only).
DELIVERIES_CHANNEL = "notification_deliveries"


async def add(conn: asyncpg.Connection, account_id: str, kind: str, message: str, data_json: str, cause_id: str,
              created_at: datetime) -> int | None:
    """Store a notification and one pending delivery per channel the account has on; None
    when one for the same cause is already stored. One statement."""
    return await conn.fetchval(
        """WITH entry AS (
               INSERT INTO feed (account_id, kind, message, data, cause_id, created_at)
               VALUES ($1, $2, $3, $4::jsonb, $5, $6)
               ON CONFLICT (cause_id) DO NOTHING RETURNING id
           ), queued AS (
               INSERT INTO deliveries (feed_id, channel, next_attempt_at, created_at)
               SELECT entry.id, ch.name, now(), now()
               FROM entry JOIN channels c ON c.account_id = $1
               CROSS JOIN LATERAL (VALUES ('webhook', c.webhook_url IS NOT NULL),
                                          ('email', c.email IS NOT NULL)) AS ch(name, wanted)
               WHERE ch.wanted
               RETURNING 1
           ), woken AS (
               SELECT pg_notify($7, '') FROM queued LIMIT 1
           )
           SELECT entry.id, (SELECT count(*) FROM woken) AS woken FROM entry""",
        account_id, kind, message, data_json, cause_id, created_at, DELIVERIES_CHANNEL,
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


# ---------------------------------------------------------------- channels and deliveries


async def set_channels(conn: asyncpg.Connection, account_id: str, webhook_url: str | None,
                       webhook_secret: str | None, email: str | None, now: datetime) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO channels (account_id, webhook_url, webhook_secret, email, updated_at)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (account_id) DO UPDATE
               SET webhook_url = $2, webhook_secret = $3, email = $4, updated_at = $5
           RETURNING account_id, webhook_url, webhook_secret IS NOT NULL AS webhook_secret_set, email, updated_at""",
        account_id, webhook_url, webhook_secret, email, now,
    )


async def channels(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT account_id, webhook_url, webhook_secret IS NOT NULL AS webhook_secret_set, email, updated_at
           FROM channels WHERE account_id = $1""",
        account_id,
    )


async def deliveries(conn: asyncpg.Connection, account_id: str, status: str | None,
                     limit: int) -> list[asyncpg.Record]:
    """The account's latest ``limit`` deliveries (of one status when given), oldest first."""
    return await conn.fetch(
        """SELECT * FROM (
               SELECT d.id, d.feed_id, f.kind, d.channel, d.status, d.attempts, d.last_error,
                      d.next_attempt_at, d.delivered_at, d.created_at
               FROM deliveries d JOIN feed f ON f.id = d.feed_id
               WHERE f.account_id = $1 AND ($2::text IS NULL OR d.status = $2)
               ORDER BY d.feed_id DESC, d.channel DESC LIMIT $3
           ) latest ORDER BY feed_id, channel""",
        account_id, status, limit,
    )


async def claim(conn: asyncpg.Connection, lease_seconds: float, batch: int) -> list[asyncpg.Record]:
    """Claim up to ``batch`` due pending deliveries: count the attempt and push their due
    time out by the lease, so another worker skips them (and picks them up again should this
    one die before recording the outcome). Returns them with the entry and the account's
    current channel settings."""
    return await conn.fetch(
        """WITH due AS (
               SELECT id FROM deliveries
               WHERE status = 'pending' AND next_attempt_at <= now()
               ORDER BY next_attempt_at, id LIMIT $2
               FOR UPDATE SKIP LOCKED
           ), claimed AS (
               UPDATE deliveries d SET attempts = d.attempts + 1,
                                       next_attempt_at = now() + make_interval(secs => $1)
               FROM due WHERE d.id = due.id
               RETURNING d.id, d.feed_id, d.channel, d.attempts
           )
           SELECT claimed.id, claimed.channel, claimed.attempts,
                  f.id AS feed_id, f.account_id, f.kind, f.message, f.data::text AS data, f.cause_id, f.created_at,
                  c.webhook_url, c.webhook_secret, c.email
           FROM claimed JOIN feed f ON f.id = claimed.feed_id
           LEFT JOIN channels c ON c.account_id = f.account_id""",
        lease_seconds, batch,
    )


async def next_due(conn: asyncpg.Connection) -> float | None:
    """Seconds until the earliest pending delivery is due (negative when overdue; None when
    nothing is pending)."""
    return await conn.fetchval("""SELECT extract(epoch FROM min(next_attempt_at) - now())::float8
                                  FROM deliveries WHERE status = 'pending'""")


async def record(conn: asyncpg.Connection, ids: list, attempts: list[int], errors: list[str | None],
                 retry_in: list[float | None]) -> None:
    """Record the outcomes of claimed deliveries in one statement: no error = delivered; an
    error with a retry delay (seconds) = pending again; an error without = failed. A failure is only
    recorded by the claim that made it (``attempts`` matches), never over a newer claim."""
    await conn.execute(
        """UPDATE deliveries d
           SET status = CASE WHEN r.error IS NULL THEN 'delivered'
                             WHEN r.retry_in IS NULL THEN 'failed' ELSE 'pending' END,
               delivered_at = CASE WHEN r.error IS NULL THEN now() END,
               last_error = coalesce(r.error, d.last_error),
               next_attempt_at = now() + make_interval(secs => r.retry_in)
           FROM unnest($1::uuid[], $2::int[], $3::text[], $4::float8[]) AS r(id, attempts, error, retry_in)
           WHERE d.id = r.id AND d.status = 'pending' AND (r.error IS NULL OR d.attempts = r.attempts)""",
        ids, attempts, errors, retry_in,
    )


async def resend(conn: asyncpg.Connection, account_id: str, ids: list) -> list[asyncpg.Record]:
    """Make the account's failed deliveries (all, or those of ``ids``) pending again with
    fresh attempts (``last_error`` stays), and wake the worker on commit."""
    return await conn.fetch(
        """WITH again AS (
               UPDATE deliveries d SET status = 'pending', attempts = 0, next_attempt_at = now()
               FROM feed f
               WHERE f.id = d.feed_id AND f.account_id = $1 AND d.status = 'failed'
                 AND (cardinality($2::uuid[]) = 0 OR d.id = ANY($2::uuid[]))
               RETURNING d.id, d.feed_id, f.kind, d.channel, d.status, d.attempts, d.last_error,
                         d.next_attempt_at, d.delivered_at, d.created_at
           ), woken AS (
               SELECT pg_notify($3, '') FROM again LIMIT 1
           )
           SELECT again.* FROM again CROSS JOIN (SELECT count(*) FROM woken) AS w ORDER BY feed_id, channel""",
        account_id, ids, DELIVERIES_CHANNEL,
    )
