"""The SQL closing of tax lots (``fills_store.close_single_sales``) against the Python
reference (``lots.close_sales``), on the real PostgreSQL: many (account, security) pairs with
random open lots (losses and gains, short and long term, equal gains per share, lots that a
sale closes in part or not at all, sales beyond every lot), one sale each. Gains, costs,
proceeds and what each lot keeps must be the same to the cent and the share."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import asyncpg
import pytest

from services.ledger import fills_store, lots
from tests.integration import test_ledger_lots

ledger = test_ledger_lots.ledger  # the ledger service fixture, shared (it migrates the ledger)

pytestmark = pytest.mark.integration

SOLD_ON = date(2026, 11, 25)


def random_pairs(seed: int, pairs: int) -> tuple[dict[tuple[str, str], list[lots.Lot]], list[lots.Sale]]:
    """Open lots and one sale per pair (lot ids are placeholders until inserted)."""
    rng = random.Random(seed)
    held: dict[tuple[str, str], list[lots.Lot]] = {}
    sales = []
    tag = uuid.uuid4().hex[:6]
    for k in range(pairs):
        key = (f"sql-{tag}-{k % 7}", f"S{k:03d}")
        price = D(rng.randint(500, 50_000)) / 100
        owned = []
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5])):
            quantity = D(rng.randint(1, 5_000_000)) / 100_000
            if rng.random() < 0.2:  # exactly at the sale's price: zero gain
                cost = (quantity * price).quantize(D("0.01"))
            else:
                cost = (quantity * price * D(rng.randint(50, 150)) / 100).quantize(D("0.01"))
            acquired = SOLD_ON - timedelta(days=rng.choice([3, 200, 365, 366, 367, 800]))
            owned.append(lots.Lot(0, acquired, quantity, cost))
        held[key] = owned
        total = sum((lot.quantity for lot in owned), D(0))
        quantity = max(D("0.00001"), (total * D(rng.randint(10, 130)) / 100).quantize(D("0.00001")))
        sales.append(lots.Sale("", key[0], key[1], quantity, (quantity * price).quantize(D("0.01")), price))
    return held, sales


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_single_sales_close_lots_in_sql_exactly_as_the_reference(ledger, settings, seed):
    held, sales = random_pairs(seed, 150)
    window_id = uuid.uuid4()
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "ledger"})
    try:
        accounts = sorted({a for a, _ in held})
        await conn.executemany("INSERT INTO accounts (account_id, kind, plan, opened_at) VALUES ($1, 'individual', "
                               "'basic', now()) ON CONFLICT DO NOTHING", [(a,) for a in accounts])
        with_ids: dict[tuple[str, str], list[lots.Lot]] = {}
        for (account, symbol), owned in held.items():
            with_ids[(account, symbol)] = []
            for lot in owned:
                lot_id = await conn.fetchval(
                    """INSERT INTO lots (account_id, symbol, window_id, intent_id, acquired_at, acquired_on, quantity,
                                         cost, remaining, remaining_cost)
                       VALUES ($1, $2, 'setup', $3, $4, $5, $6, $7, $6, $7) RETURNING lot_id""",
                    account, symbol, uuid.uuid4(), datetime(lot.acquired.year, lot.acquired.month, lot.acquired.day,
                                                            tzinfo=UTC), lot.acquired, lot.quantity, lot.cost)
                with_ids[(account, symbol)].append(lots.Lot(lot_id, lot.acquired, lot.quantity, lot.cost))
        intent_ids = [uuid.uuid4() for _ in sales]
        sales = [lots.Sale(f"{window_id}:{i}", s.account_id, s.symbol, s.quantity, s.proceeds, s.price)
                 for i, s in zip(intent_ids, sales)]
        expected, changed = lots.close_sales(with_ids, sales, SOLD_ON)
        # the cases the comparison must cover: shares without a lot, losses, long-term lots,
        # lots closed in part
        opened = {lot.lot_id: lot for owned in with_ids.values() for lot in owned}
        closures = [c for _, c in expected]
        assert any(c.lot_id is None for c in closures) and any(c.gain < 0 for c in closures)
        assert any(c.term == "long" for c in closures)
        assert any(c.lot_id is not None and c.quantity < opened[c.lot_id].quantity for c in closures)

        sold_at = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
        async with conn.transaction():
            await fills_store.stage(conn, fills_store.fills_json(
                [(i, s.account_id, s.symbol, "sell", format(s.quantity, "f"), format(s.proceeds, "f"),
                  format(s.price, "f")) for i, s in zip(intent_ids, sales)]))
            losses = await fills_store.close_single_sales(conn, window_id, sold_at, SOLD_ON)

        rows = await conn.fetch(
            """SELECT sale_id, lot_id, acquired_on, quantity, proceeds, cost, gain, term, basis_known
               FROM realised_gains WHERE sale_id LIKE $1 ORDER BY sale_id, gain_id""", f"{window_id}:%")
        want = sorted(((s.sale_id, c.lot_id, c.acquired, c.quantity, c.proceeds, c.cost, c.gain, c.term,
                        c.lot_id is not None) for s, c in expected), key=lambda r: r[0])
        assert [tuple(r) for r in rows] == want
        assert losses == sorted({(s.account_id, s.symbol) for s, c in expected if c.gain < 0})
        kept = {r["lot_id"]: (r["remaining"], r["remaining_cost"]) for r in await conn.fetch(
            "SELECT lot_id, remaining, remaining_cost FROM lots WHERE lot_id = ANY($1::bigint[])", list(opened))}
        for lot_id, lot in opened.items():
            after = changed.get(lot_id, lot)
            assert kept[lot_id] == (after.quantity, after.cost), lot
    finally:
        await conn.close()


async def test_cents_half_even_in_sql_rounds_as_the_python_money_helper(ledger, settings):
    from shared.money import cents

    values = [D(v) for v in ("0", "0.005", "0.015", "0.025", "1.125", "2.675", "12.345", "12.355", "0.0049999",
                             "0.0050001", "-0.005", "-0.015", "-2.675", "99999999.995", "3.14159")]
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "ledger"})
    try:
        got = await conn.fetch("SELECT v, cents_half_even(v) AS c FROM unnest($1::numeric[]) AS t(v)", values)
    finally:
        await conn.close()
    assert [(r["v"], r["c"]) for r in got] == [(v, cents(v)) for v in values]
