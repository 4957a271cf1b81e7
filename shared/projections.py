"""The ledger's state as other services keep it: complete lists of an account's positions.

A ``ledger.fills.booked`` gives per account every security it holds at a version; a security
it leaves out is not held then. Each service that keeps positions has the tables
``positions (account_id, symbol, quantity, version)`` and ``position_lists (account_id,
version)``: the version of the newest list applied, so that a late, older list cannot add
back a security a newer list left out. The window applies a whole batch's lists in one
statement of its own (``services/window/store.py`` ``apply_fills_booked``), by the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import asyncpg


async def apply_position_list(conn: asyncpg.Connection, account_id: str, positions: Mapping[str, Decimal],
                              version: int) -> None:
    """The account's complete positions as of ``version``, in one statement: listed symbols
    take their quantity, every other symbol held goes to zero; rows already at a newer
    version stay, and a symbol with no row is added only by a list newer than the last one
    applied (which did not hold it). A sold-out position stays as a zero row so that its
    version still guards it."""
    symbols = sorted(positions)
    await conn.execute(
        """WITH before AS (SELECT coalesce(max(version), 0) AS version FROM position_lists WHERE account_id = $1),
                listed AS (INSERT INTO position_lists (account_id, version) VALUES ($1, $4)
                           ON CONFLICT (account_id) DO UPDATE SET version = EXCLUDED.version
                           WHERE position_lists.version < EXCLUDED.version),
                moved AS (INSERT INTO positions (account_id, symbol, quantity, version)
                          SELECT $1, s, q, $4 FROM unnest($2::text[], $3::numeric[]) AS t(s, q)
                          WHERE $4 > (SELECT version FROM before)
                             OR EXISTS (SELECT 1 FROM positions p WHERE p.account_id = $1 AND p.symbol = t.s)
                          ORDER BY s
                          ON CONFLICT (account_id, symbol) DO UPDATE
                          SET quantity = EXCLUDED.quantity, version = EXCLUDED.version
                          WHERE positions.version < EXCLUDED.version)
           UPDATE positions SET quantity = 0, version = $4
           WHERE account_id = $1 AND symbol <> ALL($2::text[]) AND version < $4""",
        account_id, symbols, [positions[s] for s in symbols], version)
