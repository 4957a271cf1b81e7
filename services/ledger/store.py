"""The ledger's SQL. Parameters only; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import asyncpg

from services.ledger.domain import USD, Posting, cash_book, securities_book


async def get_account(conn: asyncpg.Connection, account_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    sql = "SELECT account_id, kind, plan, opened_at, version FROM accounts WHERE account_id = $1"
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), account_id)


async def insert_account(conn: asyncpg.Connection, account_id: str, kind: str, plan: str, opened_at: datetime) -> bool:
    row = await conn.fetchrow(
        """INSERT INTO accounts (account_id, kind, plan, opened_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id) DO NOTHING RETURNING account_id""",
        account_id, kind, plan, opened_at,
    )
    return row is not None


async def lock_accounts(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    """Lock the accounts in a stable order so that two bookings never deadlock."""
    rows = await conn.fetch(
        """SELECT account_id, version FROM accounts JOIN unnest($1::text[]) AS t(a) ON account_id = t.a
           ORDER BY account_id FOR UPDATE OF accounts""",
        list(account_ids),
    )
    return {r["account_id"]: r for r in rows}


async def bump_versions(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "UPDATE accounts SET version = version + 1 WHERE account_id = ANY($1::text[]) RETURNING account_id, version",
        list(account_ids),
    )
    return {r["account_id"]: r["version"] for r in rows}


async def bump_version(conn: asyncpg.Connection, account_id: str) -> int | None:
    """Lock the account and bump its version; None when the account does not exist."""
    return await conn.fetchval(
        "UPDATE accounts SET version = version + 1 WHERE account_id = $1 RETURNING version", account_id
    )


async def insert_entry(conn: asyncpg.Connection, *, kind: str, reference: str, account_id: str | None,
                       correlation_id: str, booked_at: datetime) -> int | None:
    """A new entry's id, or None when an entry of the same kind and reference exists (it was
    booked before)."""
    return await conn.fetchval(
        """INSERT INTO entries (kind, reference, account_id, correlation_id, booked_at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, reference) DO NOTHING RETURNING entry_id""",
        kind, reference, account_id, correlation_id, booked_at,
    )


async def book_entry(conn: asyncpg.Connection, *, kind: str, reference: str, account_id: str | None,
                     correlation_id: str, booked_at: datetime, postings: Sequence[Posting]
                     ) -> tuple[int, dict[tuple[str, str], Decimal]] | None:
    """Insert an entry and its postings, and move the customer balances. Returns the entry id
    and the new balance of every customer (book, asset) it moved, or None when an entry of
    the same kind and reference already exists (it was booked before). (A window's fills are
    booked by ``fills_store``, set-based.)

    Firm books (``firm:*``) get no running balance: every deposit touches ``firm:bank``, and a
    running row would serialise all bookings on its lock. Their balances are summed from
    postings when read (``firm_balances``).
    """
    entry_id = await insert_entry(conn, kind=kind, reference=reference, account_id=account_id,
                                  correlation_id=correlation_id, booked_at=booked_at)
    if entry_id is None:
        return None
    books = [p.book for p in postings]
    assets = [p.asset for p in postings]
    # Amounts travel as text: asyncpg's binary numeric encoding costs more than PostgreSQL's
    # parsing of the same digits.
    amounts = [str(p.amount) for p in postings]
    # One statement for all legs, so the balance trigger sees the whole entry.
    await conn.execute(
        """INSERT INTO postings (entry_id, book, asset, amount)
           SELECT $1, b, a, m::numeric FROM unnest($2::text[], $3::text[], $4::text[]) AS t(b, a, m)""",
        entry_id, books, assets, amounts,
    )
    rows = await conn.fetch(
        """INSERT INTO balances (book, asset, amount)
           SELECT b, a, sum(m::numeric) FROM unnest($1::text[], $2::text[], $3::text[]) AS t(b, a, m)
           WHERE b NOT LIKE 'firm:%'
           GROUP BY b, a ORDER BY b, a
           ON CONFLICT (book, asset) DO UPDATE SET amount = balances.amount + EXCLUDED.amount
           RETURNING book, asset, amount""", books, assets, amounts)
    return entry_id, {(r["book"], r["asset"]): r["amount"] for r in rows}


async def all_batches_booked(conn: asyncpg.Connection, window_id: str, batches: int) -> bool:
    """Whether all ``batches`` fill entries of the window are booked (this transaction's
    included)."""
    # Held to commit: of two batches booked at once, the later one sees the other's entry.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('m1.ledger.window:' || $1))", window_id)
    booked = await conn.fetchval(
        "SELECT count(*) FROM entries WHERE kind = 'fill' AND reference LIKE $1 || ':%'", window_id)
    return booked >= batches


async def window_fills_booked(conn: asyncpg.Connection, window_id: str) -> bool:
    """Whether any fill entry of the window is booked (a whole window's or a batch's)."""
    return await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM entries WHERE kind = 'fill'
                          AND (reference = $1 OR reference LIKE $1 || ':%'))""", window_id)


async def unbalanced(conn: asyncpg.Connection, book: str) -> list[asyncpg.Record]:
    """The assets on which ``book`` does not sum to zero."""
    return await conn.fetch(
        "SELECT asset, sum(amount) AS amount FROM postings WHERE book = $1 GROUP BY asset HAVING sum(amount) <> 0",
        book)


async def firm_balances(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The firm's books (bank, street, residue), summed from postings."""
    return await conn.fetch(
        "SELECT book, asset, sum(amount) AS amount FROM postings WHERE book LIKE 'firm:%' GROUP BY book, asset"
    )


async def cash_of(conn: asyncpg.Connection, account_id: str) -> Decimal:
    value = await conn.fetchval("SELECT amount FROM balances WHERE book = $1 AND asset = $2", cash_book(account_id), USD)
    return (value or Decimal("0")).quantize(Decimal("0.01"))


async def cash_of_many(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, Decimal]:
    rows = await conn.fetch(
        "SELECT book, amount FROM balances WHERE book = ANY($1::text[]) AND asset = $2",
        [cash_book(a) for a in account_ids], USD,
    )
    by_book = {r["book"]: r["amount"] for r in rows}
    return {a: by_book.get(cash_book(a), Decimal("0")).quantize(Decimal("0.01")) for a in account_ids}


async def positions_of_many(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, dict[str, Decimal]]:
    rows = await conn.fetch(
        "SELECT book, asset, amount FROM balances WHERE book = ANY($1::text[]) AND amount <> 0 ORDER BY asset",
        [securities_book(a) for a in account_ids],
    )
    out: dict[str, dict[str, Decimal]] = {a: {} for a in account_ids}
    by_book = {securities_book(a): a for a in account_ids}
    for r in rows:
        out[by_book[r["book"]]][r["asset"]] = r["amount"]
    return out


async def find_funding(conn: asyncpg.Connection, funding_id) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT funding_id, kind, account_id, amount FROM funding WHERE funding_id = $1", funding_id)


async def insert_funding(conn: asyncpg.Connection, funding_id, kind: str, account_id: str, amount: Decimal,
                         entry_id: int, booked_at: datetime) -> None:
    await conn.execute(
        """INSERT INTO funding (funding_id, kind, account_id, amount, entry_id, booked_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        funding_id, kind, account_id, amount, entry_id, booked_at,
    )


async def trial_balance(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Sum of every asset over all books: each must be zero when the books balance."""
    return await conn.fetch("SELECT asset, sum(amount) AS total FROM postings GROUP BY asset ORDER BY asset")


# ---------------------------------------------------------------- withdrawals waiting for sells


async def hold_withdrawal(conn: asyncpg.Connection, withdrawal_id, account_id: str, amount: Decimal,
                          requested_at: datetime) -> bool:
    """Keep a withdrawal pending; False when this id is already held (or was)."""
    row = await conn.fetchrow(
        """INSERT INTO pending_withdrawals (withdrawal_id, account_id, amount, requested_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (withdrawal_id) DO NOTHING RETURNING withdrawal_id""",
        withdrawal_id, account_id, amount, requested_at,
    )
    return row is not None


async def with_open_withdrawals(conn: asyncpg.Connection, account_ids: Sequence[str]) -> list[str]:
    """Those of the accounts that have a pending withdrawal, in account order."""
    rows = await conn.fetch(
        """SELECT DISTINCT account_id FROM pending_withdrawals JOIN unnest($1::text[]) AS t(a) ON account_id = t.a
           WHERE status = 'pending' ORDER BY account_id""", list(account_ids))
    return [r["account_id"] for r in rows]


async def open_withdrawals(conn: asyncpg.Connection, account_id: str, *, lock: bool = True) -> list[asyncpg.Record]:
    """The account's pending withdrawals, oldest first, locked unless not ``lock``."""
    return await conn.fetch(
        """SELECT withdrawal_id, amount FROM pending_withdrawals WHERE account_id = $1 AND status = 'pending'
           ORDER BY requested_at, withdrawal_id""" + (" FOR UPDATE" if lock else ""),
        account_id,
    )


async def held_withdrawals(conn: asyncpg.Connection, account_id: str) -> Decimal:
    """What the account's pending withdrawals (locked) will take: cash already spoken for."""
    return sum((w["amount"] for w in await open_withdrawals(conn, account_id)), Decimal("0.00"))


async def close_withdrawal(conn: asyncpg.Connection, withdrawal_id, status: str, reason: str | None = None
                           ) -> asyncpg.Record | None:
    """Mark a pending withdrawal paid or rejected; None when it is not pending."""
    return await conn.fetchrow(
        """UPDATE pending_withdrawals SET status = $2, reason = $3 WHERE withdrawal_id = $1 AND status = 'pending'
           RETURNING account_id, amount""",
        withdrawal_id, status, reason,
    )


# ---------------------------------------------------------------- cash held for trade windows


async def hold_window_cash(conn: asyncpg.Connection, window_id, accounts: Sequence[str], amounts: Sequence[Decimal],
                           held_at: datetime) -> dict[str, Decimal]:
    """Hold what each account's buys in the window take from its cash (the accounts locked
    by the caller), at most the cash it has for trading: its balance less its held
    withdrawals and its other windows' holds. Returns, in account order, the accounts whose
    cash falls short of the amount asked, with that cash: below zero when held withdrawals
    (or a negative balance) claim more than the balance, so that the window's buys leave
    the account's sell proceeds to them first; zero, and nothing held, for an account the
    ledger does not know. A window held before keeps its holds, and gets the same answer."""
    rows = await conn.fetch(
        f"""WITH h AS (SELECT * FROM unnest($2::text[], $3::numeric[]) AS t(a, need)),
                 c AS (SELECT h.a, h.need,
                              coalesce(b.amount, 0)
                              - coalesce((SELECT sum(w.amount) FROM pending_withdrawals w
                                          WHERE w.account_id = h.a AND w.status = 'pending'), 0)
                              - coalesce((SELECT sum(o.amount) FROM window_holds o
                                          WHERE o.account_id = h.a AND o.window_id <> $1), 0) AS free
                       FROM h LEFT JOIN balances b ON b.book = 'customer:' || h.a || ':cash' AND b.asset = '{USD}'),
                 held AS (INSERT INTO window_holds (account_id, window_id, amount, held_at)
                          SELECT a, $1, greatest(least(need, free), 0), $4 FROM c
                          WHERE EXISTS (SELECT 1 FROM accounts WHERE account_id = c.a) ORDER BY a
                          ON CONFLICT (account_id, window_id) DO NOTHING)
            SELECT a, free::numeric(16, 2) AS free FROM c WHERE free < need ORDER BY a""",
        window_id, list(accounts), list(amounts), held_at)
    return {r["a"]: r["free"] for r in rows}


async def release_window_cash(conn: asyncpg.Connection, window_id, accounts: Sequence[str] | None = None
                              ) -> list[str]:
    """Release the window's holds: of ``accounts``, or all of them (None). Returns the
    accounts released, in order."""
    if accounts is None:
        rows = await conn.fetch("DELETE FROM window_holds WHERE window_id = $1 RETURNING account_id", window_id)
    else:
        rows = await conn.fetch(
            """DELETE FROM window_holds h USING unnest($2::text[]) AS t(a)
               WHERE h.account_id = t.a AND h.window_id = $1 RETURNING h.account_id""",
            window_id, list(accounts))
    return sorted(r["account_id"] for r in rows)


async def cash_held_for_windows(conn: asyncpg.Connection, account_id: str) -> Decimal:
    """The account's cash held for windows whose fills are not booked yet."""
    value = await conn.fetchval("SELECT sum(amount) FROM window_holds WHERE account_id = $1", account_id)
    return value or Decimal("0.00")
