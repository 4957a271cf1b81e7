"""The window's SQL. Parameters only; the caller owns the transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from shared.contracts import Execution, Fill, Intent, NetOrder, Residue

_INTENT_COLUMNS = "intent_id, account_id, symbol, side, amount, quantity, source"


def _intent(row: asyncpg.Record) -> Intent:
    return Intent(intent_id=row["intent_id"], account_id=row["account_id"], symbol=row["symbol"], side=row["side"],
                  amount=row["amount"], quantity=row["quantity"], source=row["source"])


def _intent_columns(intents: Sequence[Intent]) -> list[list]:
    """Intents as parallel arrays for ``unnest``: ids, accounts, symbols, sides, amounts,
    quantities, sources."""
    return [[i.intent_id for i in intents], [i.account_id for i in intents], [i.symbol for i in intents],
            [i.side.value for i in intents], [i.amount for i in intents], [i.quantity for i in intents],
            [i.source.value for i in intents]]


async def insert_intents(conn: asyncpg.Connection, batch_id: UUID, intents: Sequence[Intent],
                         created_at: datetime) -> int:
    """Store a batch as pending intents in one statement; an intent id stored before is left
    as it is. Returns how many were new."""
    rows = await conn.fetch(
        """INSERT INTO intents (intent_id, batch_id, account_id, symbol, side, amount, quantity, source, created_at)
           SELECT i, $1, a, s, d, m, q, o, $9
           FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::numeric[], $8::text[])
                AS t(i, a, s, d, m, q, o)
           ON CONFLICT (intent_id) DO NOTHING RETURNING intent_id""",
        batch_id, *_intent_columns(intents), created_at,
    )
    return len(rows)


async def conflicting_intents(conn: asyncpg.Connection, intents: Sequence[Intent]) -> list[UUID]:
    """Ids of ``intents`` stored before with different content (the same id, another intent)."""
    rows = await conn.fetch(
        """SELECT t.i FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::numeric[],
                                 $7::text[]) AS t(i, a, s, d, m, q, o)
           JOIN intents ON intents.intent_id = t.i
           WHERE (intents.account_id, intents.symbol, intents.side, intents.amount, intents.quantity, intents.source)
                 IS DISTINCT FROM (t.a, t.s, t.d, t.m, t.q, t.o)
           ORDER BY t.i""",
        *_intent_columns(intents),
    )
    return [r["i"] for r in rows]


async def lock_closing(conn: asyncpg.Connection) -> None:
    """Serialise window closes for the rest of the transaction: one close at a time."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('m1.window.close'))")


async def freeze_pending(conn: asyncpg.Connection, window_id: UUID) -> list[Intent]:
    """Move every pending intent into ``window_id``; returns them in arrival order."""
    rows = await conn.fetch(
        f"""WITH frozen AS (UPDATE intents SET status = 'frozen', window_id = $1 WHERE status = 'pending'
                            RETURNING {_INTENT_COLUMNS}, created_at)
            SELECT {_INTENT_COLUMNS} FROM frozen ORDER BY created_at, intent_id""",
        window_id,
    )
    return [_intent(r) for r in rows]


async def insert_window(conn: asyncpg.Connection, window_id: UUID, closed_at: datetime) -> None:
    await conn.execute("INSERT INTO windows (window_id, status, closed_at) VALUES ($1, 'executing', $2)",
                       window_id, closed_at)


async def insert_orders(conn: asyncpg.Connection, window_id: UUID, orders: Sequence[NetOrder]) -> None:
    await conn.execute(
        """INSERT INTO orders (window_id, symbol, side, notional)
           SELECT $1, s, d, n FROM unnest($2::text[], $3::text[], $4::numeric[]) AS t(s, d, n)""",
        window_id, [o.symbol for o in orders], [o.side.value for o in orders], [o.notional for o in orders],
    )


async def lock_window(conn: asyncpg.Connection, window_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT window_id, status FROM windows WHERE window_id = $1 FOR UPDATE", window_id)


async def intents_of(conn: asyncpg.Connection, window_id: UUID) -> list[Intent]:
    rows = await conn.fetch(
        f"SELECT {_INTENT_COLUMNS} FROM intents WHERE window_id = $1 ORDER BY created_at, intent_id", window_id)
    return [_intent(r) for r in rows]


async def record_executions(conn: asyncpg.Connection, window_id: UUID, executions: Sequence[Execution]) -> None:
    await conn.execute(
        """UPDATE orders SET executed_quantity = t.q, executed_price = t.p, executed_amount = t.a
           FROM unnest($2::text[], $3::numeric[], $4::numeric[], $5::numeric[]) AS t(s, q, p, a)
           WHERE orders.window_id = $1 AND orders.symbol = t.s""",
        window_id, [e.symbol for e in executions], [e.quantity for e in executions], [e.price for e in executions],
        [e.amount for e in executions],
    )


async def insert_fills(conn: asyncpg.Connection, window_id: UUID, fills: Sequence[Fill]) -> None:
    await conn.execute(
        """INSERT INTO fills (intent_id, window_id, account_id, symbol, side, quantity, amount, price)
           SELECT i, $1, a, s, d, q, m, p
           FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::numeric[], $8::numeric[])
                AS t(i, a, s, d, q, m, p)""",
        window_id, [f.intent_id for f in fills], [f.account_id for f in fills], [f.symbol for f in fills],
        [f.side.value for f in fills], [f.quantity for f in fills], [f.amount for f in fills],
        [f.price for f in fills],
    )


async def insert_residues(conn: asyncpg.Connection, window_id: UUID, residues: Sequence[Residue]) -> None:
    await conn.execute(
        """INSERT INTO residues (window_id, symbol, quantity, amount)
           SELECT $1, s, q, a FROM unnest($2::text[], $3::numeric[], $4::numeric[]) AS t(s, q, a)""",
        window_id, [r.symbol for r in residues], [r.quantity for r in residues], [r.amount for r in residues],
    )


async def mark_allocated(conn: asyncpg.Connection, window_id: UUID, executed_at: datetime, allocated_at: datetime,
                         summary: dict[str, Any]) -> None:
    """Mark the window's intents filled and the window allocated, with its summary."""
    await conn.execute("UPDATE intents SET status = 'filled' WHERE window_id = $1 AND status = 'frozen'", window_id)
    await conn.execute(
        """UPDATE windows SET status = 'allocated', executed_at = $2, allocated_at = $3, summary = $4::jsonb
           WHERE window_id = $1""",
        window_id, executed_at, allocated_at, json.dumps(summary),
    )
