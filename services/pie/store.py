"""The pie service's SQL. Parameters only; the caller owns the transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from services.pie.domain import FillPart
from shared.contracts import Fill


async def open_account(conn: asyncpg.Connection, account_id: str, kind: str, plan: str, opened_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO accounts (account_id, kind, plan, opened_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id) DO UPDATE SET kind = EXCLUDED.kind, plan = EXCLUDED.plan,
                                                  opened_at = EXCLUDED.opened_at""",
        account_id, kind, plan, opened_at,
    )


async def lock_account(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record:
    """The account's row, locked for this transaction. Any ledger event proves the account
    exists, so a row is created if the ledger's AccountOpened has not arrived yet."""
    await conn.execute("INSERT INTO accounts (account_id) VALUES ($1) ON CONFLICT (account_id) DO NOTHING", account_id)
    return await conn.fetchrow(
        "SELECT account_id, cash, version, auto_invest, minimum_cash FROM accounts WHERE account_id = $1 FOR UPDATE",
        account_id,
    )


async def get_account(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT account_id, cash, version, auto_invest, minimum_cash FROM accounts WHERE account_id = $1", account_id
    )


async def apply_cash(conn: asyncpg.Connection, account_id: str, cash: Decimal, version: int) -> bool:
    """Take the ledger's cash as of ``version`` unless a newer or equal version is stored."""
    row = await conn.fetchrow(
        "UPDATE accounts SET cash = $2, version = $3 WHERE account_id = $1 AND version < $3 RETURNING account_id",
        account_id, cash, version,
    )
    return row is not None


async def apply_position(conn: asyncpg.Connection, account_id: str, symbol: str, quantity: Decimal,
                         version: int) -> None:
    await conn.execute(
        """INSERT INTO positions (account_id, symbol, quantity, version) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity, version = EXCLUDED.version
           WHERE positions.version < EXCLUDED.version""",
        account_id, symbol, quantity, version,
    )


async def apply_prices(conn: asyncpg.Connection, prices: Mapping[str, Decimal], as_of: datetime) -> None:
    """Take each price unless a later one is already stored."""
    symbols = sorted(prices)
    await conn.execute(
        """INSERT INTO prices (symbol, price, as_of)
           SELECT s, p, $3 FROM unnest($1::text[], $2::numeric[]) AS t(s, p) ORDER BY s
           ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, as_of = EXCLUDED.as_of
           WHERE prices.as_of <= EXCLUDED.as_of""",
        symbols, [prices[s] for s in symbols], as_of,
    )


async def set_listed(conn: asyncpg.Connection, symbol: str, price: Decimal, delisted: str | None,
                     at: datetime) -> bool:
    """A security delisted (``delisted``: the reason) or listed again (None), unless a later
    announcement is already applied (False); a security never priced here gets its last price."""
    return await conn.fetchval(
        """INSERT INTO prices (symbol, price, as_of, delisted, status_at) VALUES ($1, $2, $4, $3, $4)
           ON CONFLICT (symbol) DO UPDATE SET delisted = EXCLUDED.delisted, status_at = EXCLUDED.status_at
           WHERE prices.status_at IS NULL OR prices.status_at <= EXCLUDED.status_at
           RETURNING true""",
        symbol, price, delisted, at,
    ) is not None


async def holders_outside_pie(conn: asyncpg.Connection, symbol: str) -> list[str]:
    """The accounts whose books hold shares of ``symbol`` although their pie no longer has it
    anywhere (a removed slice's shares: a slice moved within the tree has moved its shares
    already), in account order."""
    rows = await conn.fetch(
        """SELECT DISTINCT h.account_id FROM slice_holdings h JOIN pies p USING (account_id)
           WHERE h.symbol = $1 AND h.quantity > 0
             AND NOT jsonb_path_exists(p.tree, '$.**.symbol ? (@ == $s)', jsonb_build_object('s', $1::text))
           ORDER BY h.account_id""", symbol)
    return [r["account_id"] for r in rows]


async def delisted_of(conn: asyncpg.Connection, symbols: Sequence[str]) -> dict[str, str]:
    """The delisted securities among ``symbols``, with the reason."""
    rows = await conn.fetch("SELECT symbol, delisted FROM prices WHERE symbol = ANY($1::text[]) "
                            "AND delisted IS NOT NULL ORDER BY symbol", list(symbols))
    return {r["symbol"]: r["delisted"] for r in rows}


async def prices_of(conn: asyncpg.Connection, symbols: Sequence[str]) -> dict[str, Decimal]:
    rows = await conn.fetch("SELECT symbol, price FROM prices WHERE symbol = ANY($1::text[])", list(symbols))
    return {r["symbol"]: r["price"] for r in rows}


async def set_pie(conn: asyncpg.Connection, account_id: str, name: str, tree_json: str, set_at: datetime) -> int:
    """Store the account's pie; returns its version (1 for the first, one more per change)."""
    return await conn.fetchval(
        """INSERT INTO pies (account_id, name, tree, set_at, version) VALUES ($1, $2, $3::jsonb, $4, 1)
           ON CONFLICT (account_id) DO UPDATE SET name = EXCLUDED.name, tree = EXCLUDED.tree, set_at = EXCLUDED.set_at,
                                                  version = pies.version + 1
           RETURNING version""",
        account_id, name, tree_json, set_at,
    )


async def pie_json(conn: asyncpg.Connection, account_id: str) -> str | None:
    """The account's pie tree as JSON text, or None when no pie is set."""
    return await conn.fetchval("SELECT tree::text FROM pies WHERE account_id = $1", account_id)


async def pending_buys(conn: asyncpg.Connection, account_id: str) -> Decimal:
    return await conn.fetchval(
        """SELECT coalesce(sum(amount), 0.00)::numeric(16, 2) FROM intents
           WHERE account_id = $1 AND status = 'pending' AND side = 'buy'""",
        account_id,
    )


@dataclass(frozen=True)
class NewIntent:
    intent_id: UUID
    path: str
    symbol: str
    side: str
    amount: Decimal | None  # dollars, or None for a sell of ``quantity`` shares
    source: str
    reinvest_in: str | None = None  # the pie whose slices receive this sell's proceeds
    quantity: Decimal | None = None


async def insert_intents(conn: asyncpg.Connection, account_id: str, batch_id: UUID, intents: Sequence[NewIntent],
                         created_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO intents (intent_id, batch_id, account_id, path, symbol, side, amount, source, created_at,
                                reinvest_in, quantity)
           SELECT i, $1, $2, p, s, d, a, o, $9, r, q
           FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::numeric[], $8::text[], $10::text[],
                       $11::numeric[])
                AS t(i, p, s, d, a, o, r, q)""",
        batch_id, account_id, [i.intent_id for i in intents], [i.path for i in intents],
        [i.symbol for i in intents], [i.side for i in intents], [i.amount for i in intents],
        [i.source for i in intents], created_at, [i.reinvest_in for i in intents], [i.quantity for i in intents],
    )


async def pending_by_path(conn: asyncpg.Connection, account_id: str) -> dict[str, Decimal]:
    """Money on its way into (+, buys) or out of (-, sells) each slice: pending intents (a
    share sell at its last price, rounded down to the cent)."""
    rows = await conn.fetch(
        """SELECT path, sum(CASE WHEN side = 'buy' THEN amount
                                 ELSE -coalesce(amount, floor(quantity * coalesce(p.price, 0) * 100) / 100)
                            END)::numeric(16, 2) AS amount
           FROM intents LEFT JOIN prices p USING (symbol)
           WHERE account_id = $1 AND status = 'pending' GROUP BY path""",
        account_id,
    )
    return {r["path"]: r["amount"] for r in rows}


async def pending_sell_paths(conn: asyncpg.Connection, account_id: str) -> set[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT path FROM intents WHERE account_id = $1 AND status = 'pending' AND side = 'sell'", account_id)
    return {r["path"] for r in rows}


async def holdings(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    """Every slice holding some shares: path, symbol, quantity, cost, and the symbol's price."""
    return await conn.fetch(
        """SELECT h.path, h.symbol, h.quantity, h.cost, p.price FROM slice_holdings h LEFT JOIN prices p USING (symbol)
           WHERE h.account_id = $1 AND h.quantity > 0 ORDER BY h.path""",
        account_id,
    )


async def get_settings(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT auto_invest, minimum_cash, dividends FROM accounts WHERE account_id = $1", account_id)


async def set_settings(conn: asyncpg.Connection, account_id: str, auto_invest: bool | None,
                       minimum_cash: Decimal | None, dividends: str | None) -> asyncpg.Record | None:
    """Change the given settings (None keeps one); the account's settings after, or None."""
    return await conn.fetchrow(
        """UPDATE accounts SET auto_invest = coalesce($2, auto_invest), minimum_cash = coalesce($3, minimum_cash),
                               dividends = coalesce($4, dividends)
           WHERE account_id = $1 RETURNING auto_invest, minimum_cash, dividends""",
        account_id, auto_invest, minimum_cash, dividends,
    )


async def cancel_batch(conn: asyncpg.Connection, account_id: str, batch_id: UUID,
                       intent_ids: Sequence[UUID]) -> list[UUID]:
    """Mark the listed pending intents of the batch cancelled; the ids changed."""
    rows = await conn.fetch(
        """UPDATE intents SET status = 'cancelled' WHERE account_id = $1 AND batch_id = $2
           AND intent_id = ANY($3::uuid[]) AND status = 'pending' RETURNING intent_id""",
        account_id, batch_id, list(intent_ids),
    )
    return [r["intent_id"] for r in rows]


async def batch_intents(conn: asyncpg.Connection, account_id: str, batch_id: UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT intent_id, status FROM intents WHERE account_id = $1 AND batch_id = $2 ORDER BY intent_id",
        account_id, batch_id)


@dataclass(frozen=True)
class Booked:
    filled: int  # intents of ours marked filled
    reinvest: dict[str, Decimal]  # proceeds of filled sells earmarked for a pie, by pie path
    liquidated: bool = False  # among them, sells raising cash on request (a margin liquidation)
    oversold: dict[str, Decimal] = field(default_factory=dict)  # shares sold beyond a slice's, by path


async def book_fills(conn: asyncpg.Connection, account_id: str, window_id: UUID,
                     fills: Sequence[Fill | FillPart], filled_at: datetime) -> Booked:
    """Mark this service's pending intents among ``fills`` filled and move what they bought
    (or sold) into their slices' holdings. A buy adds its quantity and amount paid to the
    slice's cost; a sell removes its quantity and the sold fraction of the cost (average
    cost, to the cent). A slice never goes below zero shares: what a sell delivered beyond
    the slice's shares is returned as ``oversold`` (the window took it from the account's other
    holdings of the security). Intents already filled, or not ours, are skipped, so a replay
    changes nothing."""
    rows = await conn.fetch(
        """WITH f AS (
               SELECT * FROM unnest($2::uuid[], $3::text[], $4::numeric[], $5::numeric[])
                   AS t(intent_id, side, quantity, amount)
           ), done AS (
               UPDATE intents i SET status = 'filled', filled_at = $6, window_id = $7
               FROM f WHERE i.intent_id = f.intent_id AND i.account_id = $1 AND i.status = 'pending'
               RETURNING i.intent_id, i.path, i.symbol, i.reinvest_in, i.source
           ), moved AS (
               SELECT d.path, d.symbol,
                      sum(CASE WHEN f.side = 'buy' THEN f.quantity ELSE 0 END) AS bought,
                      sum(CASE WHEN f.side = 'buy' THEN f.amount ELSE 0 END) AS paid,
                      sum(CASE WHEN f.side = 'sell' THEN f.quantity ELSE 0 END) AS sold
               FROM done d JOIN f USING (intent_id) GROUP BY d.path, d.symbol
           ), oversold AS (  -- read before the insert below: every part of one statement sees the same rows
               SELECT m.path, m.sold - m.bought - coalesce(h.quantity, 0) AS shares
               FROM moved m LEFT JOIN slice_holdings h ON h.account_id = $1 AND h.path = m.path
           ), held AS (
               INSERT INTO slice_holdings AS h (account_id, path, symbol, quantity, cost)
               SELECT $1, path, symbol, greatest(bought - sold, 0), paid FROM moved ORDER BY path
               ON CONFLICT (account_id, path) DO UPDATE
                   SET quantity = greatest(h.quantity + (SELECT bought - sold FROM moved m WHERE m.path = h.path), 0),
                       cost = CASE WHEN h.quantity > 0
                                   THEN round(h.cost * greatest(h.quantity - (SELECT sold FROM moved m
                                                                               WHERE m.path = h.path), 0)
                                              / h.quantity, 2)
                                   ELSE 0 END
                              + (SELECT paid FROM moved m WHERE m.path = h.path)
               RETURNING path
           )
           SELECT d.reinvest_in, d.source, d.path, f.side, f.amount, o.shares AS oversold
           FROM done d JOIN f USING (intent_id) JOIN oversold o USING (path)""",
        account_id, [f.intent_id for f in fills], [f.side.value for f in fills], [f.quantity for f in fills],
        [f.amount for f in fills], filled_at, window_id,
    )
    reinvest: dict[str, Decimal] = {}
    for r in rows:
        if r["reinvest_in"] is not None and r["side"] == "sell":
            reinvest[r["reinvest_in"]] = reinvest.get(r["reinvest_in"], Decimal("0.00")) + r["amount"]
    return Booked(len(rows), reinvest, any(r["source"] == "liquidation" and r["side"] == "sell" for r in rows),
                  {r["path"]: r["oversold"] for r in rows if r["oversold"] > 0})


@dataclass(frozen=True)
class Snapshot:
    """What the portfolio view needs, read at one instant."""

    cash: Decimal
    tree_json: str | None
    pending_buys: Decimal
    holdings: dict[str, Decimal]  # by slice path
    prices: dict[str, Decimal]  # of the symbols held


async def snapshot(conn: asyncpg.Connection, account_id: str) -> Snapshot | None:
    """One statement, so cash, pending buys and holdings come from the same snapshot (a fill
    booked meanwhile moves all three at once or none). None for an unknown account."""
    row = await conn.fetchrow(
        """SELECT a.cash,
                  (SELECT tree::text FROM pies WHERE account_id = a.account_id) AS tree,
                  (SELECT coalesce(sum(amount), 0.00)::numeric(16, 2) FROM intents
                   WHERE account_id = a.account_id AND status = 'pending' AND side = 'buy') AS pending_buys,
                  (SELECT coalesce(json_agg(json_build_object('path', h.path, 'symbol', h.symbol,
                                                              'quantity', h.quantity::text, 'price', p.price::text)),
                                   '[]')::text
                   FROM slice_holdings h LEFT JOIN prices p USING (symbol)
                   WHERE h.account_id = a.account_id) AS holdings
           FROM accounts a WHERE a.account_id = $1""",
        account_id,
    )
    if row is None:
        return None
    held = json.loads(row["holdings"])
    return Snapshot(row["cash"], row["tree"], row["pending_buys"],
                    holdings={h["path"]: Decimal(h["quantity"]) for h in held},
                    prices={h["symbol"]: Decimal(h["price"]) for h in held if h["price"] is not None})


async def record_withdrawal(conn: asyncpg.Connection, withdrawal_id: UUID, account_id: str, amount: Decimal,
                            status: str, reason: str | None, created_at: datetime) -> bool:
    """False when this withdrawal is already known (a replay, or its payout came first)."""
    row = await conn.fetchrow(
        """INSERT INTO withdrawals (withdrawal_id, account_id, amount, status, reason, created_at)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (withdrawal_id) DO NOTHING RETURNING withdrawal_id""",
        withdrawal_id, account_id, amount, status, reason, created_at,
    )
    return row is not None


async def withdrawal_paid(conn: asyncpg.Connection, withdrawal_id: UUID, account_id: str, amount: Decimal,
                          paid_at: datetime) -> None:
    """The ledger paid this withdrawal: it no longer holds cash back."""
    await conn.execute(
        """INSERT INTO withdrawals (withdrawal_id, account_id, amount, status, created_at)
           VALUES ($1, $2, $3, 'paid', $4)
           ON CONFLICT (withdrawal_id) DO UPDATE SET status = 'paid'""",
        withdrawal_id, account_id, amount, paid_at,
    )


async def held_for_withdrawals(conn: asyncpg.Connection, account_id: str) -> Decimal:
    return await conn.fetchval(
        """SELECT coalesce(sum(amount), 0.00)::numeric(16, 2) FROM withdrawals
           WHERE account_id = $1 AND status = 'open'""",
        account_id,
    )


async def reject_intents(conn: asyncpg.Connection, account_id: str, reasons: dict[str, str]) -> int:
    """Mark the account's pending intents the window dropped for good, with its reasons."""
    result = await conn.execute(
        """UPDATE intents i SET status = 'rejected', reason = r.reason
           FROM unnest($2::uuid[], $3::text[]) AS r(intent_id, reason)
           WHERE i.intent_id = r.intent_id AND i.account_id = $1 AND i.status = 'pending'""",
        account_id, list(reasons), list(reasons.values()),
    )
    return int(result.split()[-1])


async def pending_sells(conn: asyncpg.Connection, account_id: str) -> Decimal:
    """What the account's pending sells should raise (share sells at the last price)."""
    return await conn.fetchval(
        """SELECT coalesce(sum(coalesce(amount, floor(quantity * coalesce(p.price, 0) * 100) / 100)), 0.00
                  )::numeric(16, 2)
           FROM intents LEFT JOIN prices p USING (symbol)
           WHERE account_id = $1 AND status = 'pending' AND side = 'sell'""",
        account_id,
    )


async def open_withdrawals(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT withdrawal_id, amount FROM withdrawals WHERE account_id = $1 AND status = 'open'
           ORDER BY created_at, withdrawal_id""", account_id)


async def refuse_withdrawal(conn: asyncpg.Connection, withdrawal_id: UUID, reason: str) -> bool:
    result = await conn.execute(
        "UPDATE withdrawals SET status = 'refused', reason = $2 WHERE withdrawal_id = $1 AND status = 'open'",
        withdrawal_id, reason)
    return result.endswith(" 1")


async def cash_request(conn: asyncpg.Connection, request_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM cash_requests WHERE request_id = $1", request_id)


async def record_cash_request(conn: asyncpg.Connection, request_id: UUID, account_id: str, amount: Decimal,
                              planned: Decimal, batch_id: UUID | None, intent_ids: Sequence[UUID], reason: str,
                              created_at: datetime) -> bool:
    """Record a request to raise cash and the sells submitted for it; False when the request
    id was seen before."""
    result = await conn.execute(
        """INSERT INTO cash_requests (request_id, account_id, amount, planned, batch_id, intent_ids, reason, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (request_id) DO NOTHING""",
        request_id, account_id, amount, planned, batch_id, list(intent_ids), reason, created_at)
    return result.endswith(" 1")


async def foreign_fills(conn: asyncpg.Connection, account_id: str, fills: Sequence[Fill]) -> list[Fill]:
    """The fills whose intents this service did not submit (a customer's orders)."""
    ours = {r["intent_id"] for r in await conn.fetch(
        "SELECT intent_id FROM intents WHERE account_id = $1 AND intent_id = ANY($2::uuid[])",
        account_id, [f.intent_id for f in fills])}
    return [f for f in fills if f.intent_id not in ours]


async def adopt_fills(conn: asyncpg.Connection, account_id: str, parts: Sequence[FillPart],
                      created_at: datetime) -> None:
    """Record trades made outside this service (a customer's orders, split by slice:
    ``domain.order_fill_parts``) as pending intents of source ``order``, so that booking them
    moves them into their slices like ours."""
    await conn.execute(
        """INSERT INTO intents (intent_id, batch_id, account_id, path, symbol, side, quantity, source, created_at)
           SELECT i, i, $1, p, s, d, q, 'order', $6
           FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $7::numeric[]) AS t(i, p, s, d, q)
           ON CONFLICT (intent_id) DO NOTHING""",
        account_id, [f.intent_id for f in parts], [f.path for f in parts], [f.symbol for f in parts],
        [f.side.value for f in parts], created_at, [f.quantity for f in parts],
    )


async def take_shares(conn: asyncpg.Connection, account_id: str, taken: Mapping[str, Decimal]) -> None:
    """Remove shares from slices (``taken``, by path) with their fraction of the cost (average
    cost, to the cent), never below zero: the shares a sell delivered beyond its own slice."""
    paths = sorted(taken)
    await conn.execute(
        """UPDATE slice_holdings h
           SET quantity = greatest(h.quantity - t.q, 0),
               cost = CASE WHEN h.quantity > 0 THEN round(h.cost * greatest(h.quantity - t.q, 0) / h.quantity, 2)
                           ELSE 0 END
           FROM unnest($2::text[], $3::numeric[]) AS t(p, q) WHERE h.account_id = $1 AND h.path = t.p""",
        account_id, paths, [taken[p] for p in paths],
    )


async def move_slices(conn: asyncpg.Connection, account_id: str, moves: Mapping[str, str]) -> None:
    """Move slices to new paths (``moves``: old path -> new path) in this service's books: the
    holdings (quantity and cost, added to what the new path holds) and the pending intents,
    whose fills then book into the new path. Nothing trades."""
    if not moves:
        return
    old = sorted(moves)
    await conn.execute(
        """UPDATE intents i SET path = m.new FROM unnest($2::text[], $3::text[]) AS m(old, new)
           WHERE i.account_id = $1 AND i.status = 'pending' AND i.path = m.old""",
        account_id, old, [moves[p] for p in old],
    )
    await conn.execute(
        """WITH m AS (SELECT * FROM unnest($2::text[], $3::text[]) AS t(old, new)
           ), gone AS (
               DELETE FROM slice_holdings h USING m WHERE h.account_id = $1 AND h.path = m.old
               RETURNING m.new, h.symbol, h.quantity, h.cost
           )
           INSERT INTO slice_holdings AS h (account_id, path, symbol, quantity, cost)
           SELECT $1, new, min(symbol), sum(quantity), sum(cost) FROM gone GROUP BY new ORDER BY new
           ON CONFLICT (account_id, path) DO UPDATE
               SET quantity = h.quantity + EXCLUDED.quantity, cost = h.cost + EXCLUDED.cost""",
        account_id, old, [moves[p] for p in old],
    )
