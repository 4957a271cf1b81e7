"""SQL of settlement, statements, the export and the audit. Parameters only; the caller owns
the transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

import asyncpg

from services.ledger.domain import USD, Posting, cash_book, securities_book
from services.ledger.reports import Entry

ZERO = Decimal("0")

# ---------------------------------------------------------------- trades and prices


async def record_prices(conn: asyncpg.Connection, prices: dict[str, Decimal], as_of: datetime) -> None:
    await conn.execute(
        """INSERT INTO prices (symbol, as_of, price) SELECT s, $1, p FROM unnest($2::text[], $3::numeric[]) AS t(s, p)
           ON CONFLICT (symbol, as_of) DO NOTHING""",
        as_of, list(prices), list(prices.values()),
    )


async def prices_at(conn: asyncpg.Connection, symbols: Sequence[str], at: datetime) -> dict[str, tuple[Decimal, datetime]]:
    """The last price of each symbol published before ``at``."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (symbol) symbol, price, as_of FROM prices
           WHERE symbol = ANY($1::text[]) AND as_of < $2 ORDER BY symbol, as_of DESC""",
        list(symbols), at,
    )
    return {r["symbol"]: (r["price"], r["as_of"]) for r in rows}


# ---------------------------------------------------------------- settlement


async def unsettled_sales(conn: asyncpg.Connection, account_id: str, today: date, before: datetime | None = None
                          ) -> Decimal:
    """Proceeds of the account's sales that settle after ``today`` (booked before ``before``)."""
    value = await conn.fetchval(
        """SELECT sum(amount) FROM trades WHERE account_id = $1 AND side = 'sell' AND settles_on > $2
           AND ($3::timestamptz IS NULL OR booked_at < $3)""",
        account_id, today, before,
    )
    return value or ZERO


async def recent_deposits(conn: asyncpg.Connection, account_id: str, since: datetime, before: datetime | None = None
                          ) -> list[tuple[Decimal, datetime]]:
    rows = await conn.fetch(
        """SELECT amount, booked_at FROM funding WHERE account_id = $1 AND kind = 'deposit' AND booked_at >= $2
           AND ($3::timestamptz IS NULL OR booked_at < $3)""",
        account_id, since, before,
    )
    return [(r["amount"], r["booked_at"]) for r in rows]


async def holds_securities(conn: asyncpg.Connection, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM balances WHERE book = $1 AND amount > 0)",
                                    securities_book(account_id)))


async def accounts_with_held_withdrawals(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT account_id FROM pending_withdrawals WHERE status = 'pending' ORDER BY 1")
    return [r["account_id"] for r in rows]


async def held_withdrawals_total(conn: asyncpg.Connection, account_id: str) -> Decimal:
    value = await conn.fetchval(
        "SELECT sum(amount) FROM pending_withdrawals WHERE account_id = $1 AND status = 'pending'", account_id)
    return value or ZERO


# ---------------------------------------------------------------- statements


async def balances_at(conn: asyncpg.Connection, account_id: str, at: datetime) -> tuple[Decimal, dict[str, Decimal]]:
    """The account's cash and positions just before ``at``, summed from the postings."""
    rows = await conn.fetch(
        """SELECT p.book, p.asset, sum(p.amount) AS amount FROM postings p JOIN entries e USING (entry_id)
           WHERE p.book = ANY($1::text[]) AND e.booked_at < $2 GROUP BY p.book, p.asset""",
        [cash_book(account_id), securities_book(account_id)], at,
    )
    cash = ZERO
    positions: dict[str, Decimal] = {}
    for r in rows:
        if r["book"] == cash_book(account_id) and r["asset"] == USD:
            cash = r["amount"]
        elif r["book"] == securities_book(account_id) and r["amount"] != 0:
            positions[r["asset"]] = r["amount"]
    return cash, positions


async def account_entries(conn: asyncpg.Connection, account_id: str, start: datetime, end: datetime) -> list[Entry]:
    """Entries booked in [start, end) with a posting on the account's books (only those postings)."""
    rows = await conn.fetch(
        """SELECT e.entry_id, e.kind, e.reference, e.booked_at, p.book, p.asset, p.amount
           FROM entries e JOIN postings p USING (entry_id)
           WHERE p.book = ANY($1::text[]) AND e.booked_at >= $2 AND e.booked_at < $3
           ORDER BY e.booked_at, e.entry_id""",
        [cash_book(account_id), securities_book(account_id)], start, end,
    )
    return _entries(rows)


async def trades_before(conn: asyncpg.Connection, account_id: str, at: datetime) -> list[tuple[str, str, Decimal, Decimal]]:
    rows = await conn.fetch(
        """SELECT side, symbol, quantity, amount FROM trades WHERE account_id = $1 AND booked_at < $2
           ORDER BY booked_at, entry_id""",
        account_id, at,
    )
    return [(r["side"], r["symbol"], r["quantity"], r["amount"]) for r in rows]


# ---------------------------------------------------------------- export


async def journal(conn: asyncpg.Connection) -> list[Entry]:
    """Every entry with its postings, in booking order."""
    rows = await conn.fetch(
        """SELECT e.entry_id, e.kind, e.reference, e.booked_at, p.book, p.asset, p.amount
           FROM entries e JOIN postings p USING (entry_id) ORDER BY e.booked_at, e.entry_id""")
    return _entries(rows)


def _entries(rows) -> list[Entry]:
    out: list[Entry] = []
    postings: list[Posting] = []
    current = None
    for r in rows:
        if current is None or r["entry_id"] != current[0]:
            if current is not None:
                out.append(Entry(*current, postings=tuple(postings)))
            current, postings = (r["entry_id"], r["kind"], r["reference"], r["booked_at"]), []
        postings.append(Posting(r["book"], r["asset"], r["amount"]))
    if current is not None:
        out.append(Entry(*current, postings=tuple(postings)))
    return out


# ---------------------------------------------------------------- audit


async def unbalanced_entries(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT entry_id, asset, sum(amount) AS off FROM postings GROUP BY entry_id, asset HAVING sum(amount) <> 0
           ORDER BY entry_id, asset""")


async def entries_without_postings(conn: asyncpg.Connection) -> list[int]:
    rows = await conn.fetch(
        "SELECT entry_id FROM entries e WHERE NOT EXISTS (SELECT 1 FROM postings p WHERE p.entry_id = e.entry_id)")
    return [r["entry_id"] for r in rows]


async def dangling_references(conn: asyncpg.Connection) -> list[str]:
    """Rows that name an entry, an account or a lot that does not exist (the fills path
    writes them in bulk without per-row foreign-key checks: migration 0030)."""
    checks = {
        "postings of a missing entry": "SELECT count(*) FROM postings p WHERE NOT EXISTS "
                                       "(SELECT 1 FROM entries e WHERE e.entry_id = p.entry_id)",
        "trades of a missing entry": "SELECT count(*) FROM trades t WHERE NOT EXISTS "
                                     "(SELECT 1 FROM entries e WHERE e.entry_id = t.entry_id)",
        "trades of an unknown account": "SELECT count(*) FROM trades t WHERE NOT EXISTS "
                                        "(SELECT 1 FROM accounts a WHERE a.account_id = t.account_id)",
        "tax lots of an unknown account": "SELECT count(*) FROM lots l WHERE NOT EXISTS "
                                          "(SELECT 1 FROM accounts a WHERE a.account_id = l.account_id)",
        "realised gains of an unknown account": "SELECT count(*) FROM realised_gains g WHERE NOT EXISTS "
                                                "(SELECT 1 FROM accounts a WHERE a.account_id = g.account_id)",
        "realised gains of a missing lot": "SELECT count(*) FROM realised_gains g WHERE g.lot_id IS NOT NULL "
                                           "AND NOT EXISTS (SELECT 1 FROM lots l WHERE l.lot_id = g.lot_id)",
    }
    out = []
    for what, sql in checks.items():
        if n := await conn.fetchval(sql):
            out.append(f"{n} {what}")
    return out


async def recomputed_balances(conn: asyncpg.Connection) -> dict[tuple[str, str], Decimal]:
    rows = await conn.fetch("SELECT book, asset, sum(amount) AS amount FROM postings GROUP BY book, asset")
    return {(r["book"], r["asset"]): r["amount"] for r in rows}


async def stored_balances(conn: asyncpg.Connection) -> dict[tuple[str, str], Decimal]:
    rows = await conn.fetch("SELECT book, asset, amount FROM balances")
    return {(r["book"], r["asset"]): r["amount"] for r in rows}


async def counts(conn: asyncpg.Connection) -> tuple[dict[str, int], int, list[str]]:
    kinds = {r["kind"]: r["n"] for r in await conn.fetch("SELECT kind, count(*) AS n FROM entries GROUP BY kind")}
    postings = await conn.fetchval("SELECT count(*) FROM postings")
    accounts = [r["account_id"] for r in await conn.fetch("SELECT account_id FROM accounts ORDER BY 1")]
    return kinds, postings, accounts


async def funding_mismatches(conn: asyncpg.Connection) -> list[str]:
    """Funding records against their entries: every deposit/withdrawal entry has one, for
    the amount its customer's cash moved."""
    out = []
    rows = await conn.fetch(
        """SELECT f.funding_id, f.kind, f.account_id, f.amount, e.kind AS entry_kind,
                  (SELECT sum(p.amount) FROM postings p
                    WHERE p.entry_id = f.entry_id AND p.book = 'customer:' || f.account_id || ':cash') AS moved
           FROM funding f LEFT JOIN entries e USING (entry_id)""")
    for r in rows:
        expected = r["amount"] if r["kind"] == "deposit" else -r["amount"]
        if r["entry_kind"] != r["kind"] or r["moved"] != expected:
            out.append(f"{r['kind']} {r['funding_id']} of {r['amount']} for {r['account_id']}: its entry "
                       f"({r['entry_kind']}) moved the cash by {r['moved']}")
    rows = await conn.fetch(
        """SELECT e.entry_id, e.kind, e.reference FROM entries e
           WHERE e.kind IN ('deposit', 'withdrawal') AND NOT EXISTS (SELECT 1 FROM funding f WHERE f.entry_id = e.entry_id)""")
    out += [f"{r['kind']} entry {r['entry_id']} ({r['reference']}) has no funding record" for r in rows]
    rows = await conn.fetch(
        """SELECT w.withdrawal_id, w.account_id FROM pending_withdrawals w
           WHERE w.status = 'paid' AND NOT EXISTS (SELECT 1 FROM funding f WHERE f.funding_id = w.withdrawal_id)""")
    out += [f"held withdrawal {r['withdrawal_id']} of {r['account_id']} is marked paid but was never booked"
            for r in rows]
    return out


async def funding_totals(conn: asyncpg.Connection) -> dict[str, tuple[Decimal, Decimal]]:
    rows = await conn.fetch(
        """SELECT account_id, coalesce(sum(amount) FILTER (WHERE kind = 'deposit'), 0) AS deposits,
                  coalesce(sum(amount) FILTER (WHERE kind = 'withdrawal'), 0) AS withdrawals
           FROM funding GROUP BY account_id""")
    return {r["account_id"]: (r["deposits"], r["withdrawals"]) for r in rows}


async def trade_totals(conn: asyncpg.Connection) -> dict[str, tuple[Decimal, dict[str, Decimal]]]:
    rows = await conn.fetch(
        """SELECT account_id, symbol,
                  sum(CASE WHEN side = 'sell' THEN amount ELSE -amount END) AS cash,
                  sum(CASE WHEN side = 'buy' THEN quantity ELSE -quantity END) AS quantity
           FROM trades GROUP BY account_id, symbol""")
    cash: dict[str, Decimal] = defaultdict(Decimal)
    shares: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for r in rows:
        cash[r["account_id"]] += r["cash"]
        shares[r["account_id"]][r["symbol"]] = r["quantity"]
    return {a: (cash[a], shares[a]) for a in cash}


async def other_movements(conn: asyncpg.Connection) -> tuple[dict[str, Decimal], dict[str, dict[str, Decimal]]]:
    """Per customer, what entries other than deposits, withdrawals and fills moved: cash and
    shares (dividends, fees, interest, loans...)."""
    rows = await conn.fetch(
        """SELECT split_part(p.book, ':', 2) AS account_id, split_part(p.book, ':', 3) AS part, p.asset,
                  sum(p.amount) AS amount
           FROM postings p JOIN entries e USING (entry_id)
           WHERE p.book LIKE 'customer:%' AND e.kind NOT IN ('deposit', 'withdrawal', 'fill')
           GROUP BY 1, 2, 3""")
    cash: dict[str, Decimal] = defaultdict(Decimal)
    shares: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for r in rows:
        if r["part"] == "cash" and r["asset"] == USD:
            cash[r["account_id"]] += r["amount"]
        elif r["part"] == "securities":
            shares[r["account_id"]][r["asset"]] = r["amount"]
    return cash, shares


async def open_clearing_books(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Windows' clearing books that do not sum to zero (a window not completely booked, or
    one whose allocation does not balance)."""
    return await conn.fetch(
        """SELECT book, asset, sum(amount) AS amount FROM postings WHERE book LIKE 'firm:clearing:%'
           GROUP BY book, asset HAVING sum(amount) <> 0 ORDER BY book, asset""")
