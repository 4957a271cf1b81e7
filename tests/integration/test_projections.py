"""``shared.projections.apply_position_list`` on the real tables of the services that keep
positions from ``ledger.fills.booked`` (pie and order): complete lists applied in and out of
order leave each account's newest quantities."""

from __future__ import annotations

import uuid
from decimal import Decimal as D
from pathlib import Path

import asyncpg
import pytest

from shared.db import migrate
from shared.projections import apply_position_list

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["pie", "order"])
async def conn(request, topology_declared):
    schema = request.param
    await migrate(topology_declared.database_url, schema, REPO / "services" / schema / "migrations")
    connection = await asyncpg.connect(topology_declared.database_url, server_settings={"search_path": schema})
    try:
        yield connection
    finally:
        await connection.close()


async def new_account(conn) -> str:
    account = f"proj-{uuid.uuid4().hex[:8]}"
    if await conn.fetchval("SELECT current_schema()") == "pie":  # pie's positions refer to its accounts
        await conn.execute("INSERT INTO accounts (account_id) VALUES ($1)", account)
    return account


async def held(conn, account: str) -> dict[str, tuple[D, int]]:
    rows = await conn.fetch("SELECT symbol, quantity, version FROM positions WHERE account_id = $1", account)
    return {r["symbol"]: (r["quantity"], r["version"]) for r in rows}


async def test_a_list_sets_what_it_names_and_zeroes_what_it_leaves_out(conn):
    account = await new_account(conn)
    await apply_position_list(conn, account, {"AAA": D("5"), "BBB": D("3")}, 2)
    await apply_position_list(conn, account, {"AAA": D("8")}, 3)
    assert await held(conn, account) == {"AAA": (D("8"), 3), "BBB": (D("0"), 3)}


async def test_a_late_older_list_changes_nothing_and_adds_no_security_a_newer_list_left_out(conn):
    account = await new_account(conn)
    await apply_position_list(conn, account, {"AAA": D("8")}, 3)
    await apply_position_list(conn, account, {"AAA": D("1"), "CCC": D("4")}, 2)
    assert await held(conn, account) == {"AAA": (D("8"), 3)}
    # a newer list adds it
    await apply_position_list(conn, account, {"AAA": D("8"), "CCC": D("2")}, 4)
    assert await held(conn, account) == {"AAA": (D("8"), 4), "CCC": (D("2"), 4)}
    # a replay of a list is a no-op
    await apply_position_list(conn, account, {"AAA": D("8"), "CCC": D("2")}, 4)
    assert await held(conn, account) == {"AAA": (D("8"), 4), "CCC": (D("2"), 4)}


async def test_a_row_newer_than_a_list_keeps_its_quantity(conn):
    """A position set at a newer version by other means (a single-security change) stays."""
    account = await new_account(conn)
    await conn.execute("INSERT INTO positions (account_id, symbol, quantity, version) VALUES ($1, 'AAA', 6, 7)",
                       account)
    await apply_position_list(conn, account, {"BBB": D("1")}, 5)
    assert await held(conn, account) == {"AAA": (D("6"), 7), "BBB": (D("1"), 5)}
