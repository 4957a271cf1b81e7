"""The margin service's SQL. Parameters only; the caller owns the transaction.

Ledger events carry the account's ledger ``version`` after the change. A row keeps the
version it was last set from, and an event whose version is not newer changes nothing, so a
redelivered or reordered event never puts an old balance back.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import asyncpg


async def open_account(conn: asyncpg.Connection, account_id: str, kind: str, plan: str) -> None:
    """Set the account's kind and plan. Cash may have arrived first (a redelivery reorders
    events), so the row may already exist without them."""
    await conn.execute(
        """INSERT INTO accounts (account_id, kind, plan) VALUES ($1, $2, $3)
           ON CONFLICT (account_id) DO UPDATE SET kind = EXCLUDED.kind, plan = EXCLUDED.plan
           WHERE accounts.kind IS NULL""",
        account_id, kind, plan,
    )


async def set_cash(conn: asyncpg.Connection, account_id: str, cash: Decimal, version: int) -> None:
    """Take the ledger's cash balance at ``version`` unless a newer one is already here."""
    await conn.execute(
        """INSERT INTO accounts (account_id, cash, version) VALUES ($1, $2, $3)
           ON CONFLICT (account_id) DO UPDATE SET cash = EXCLUDED.cash, version = EXCLUDED.version
           WHERE accounts.version < EXCLUDED.version""",
        account_id, cash, version,
    )


async def set_position(conn: asyncpg.Connection, account_id: str, symbol: str, quantity: Decimal,
                       version: int, house: Decimal | None = None, regulatory: Decimal | None = None) -> bool:
    """Take the ledger's quantity of one security at ``version`` unless a newer one is already
    here, and move the account's market value and requirement by the change (with ``house``
    and ``regulatory`` rates given). A position sold out stays as a zero row so that its
    version still guards it. True when applied."""
    # The account row is locked first: changes of one account's positions apply one at a
    # time, so each reads the quantity the previous one left.
    await conn.execute("INSERT INTO accounts (account_id) VALUES ($1) ON CONFLICT (account_id) DO NOTHING", account_id)
    await conn.execute("SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE", account_id)
    old = await conn.fetchval("SELECT quantity FROM positions WHERE account_id = $1 AND symbol = $2",
                              account_id, symbol)
    applied = await conn.fetchval(
        """INSERT INTO positions (account_id, symbol, quantity, version) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity, version = EXCLUDED.version
           WHERE positions.version < EXCLUDED.version
           RETURNING quantity""",
        account_id, symbol, quantity, version,
    )
    if applied is None:
        return False
    change = applied - (old or 0)
    if change and house is not None:
        await conn.execute(
            """UPDATE accounts a SET market_value = a.market_value + $3 * pr.price,
                   requirement = a.requirement + $3 * pr.price * greatest(coalesce(s.maintenance, $4), $5)
               FROM prices pr LEFT JOIN securities s ON s.symbol = pr.symbol
               WHERE a.account_id = $1 AND pr.symbol = $2""",
            account_id, symbol, change, house, regulatory)
    return True


async def set_prices(conn: asyncpg.Connection, prices: dict[str, Decimal], as_of: datetime) -> dict[str, Decimal]:
    """Upsert a batch of prices in one statement; a price older than the stored one is kept
    out. Returns the change of each price applied (new - old; the old of a first price is 0)."""
    symbols = sorted(prices)
    rows = await conn.fetch(
        """WITH incoming AS (SELECT s, p FROM unnest($1::text[], $2::numeric[]) AS t(s, p)),
                before AS (SELECT i.s, pr.price AS old FROM incoming i LEFT JOIN prices pr ON pr.symbol = i.s),
                up AS (INSERT INTO prices (symbol, price, as_of) SELECT s, p, $3::timestamptz FROM incoming
                       ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, as_of = EXCLUDED.as_of
                       WHERE prices.as_of <= EXCLUDED.as_of
                       RETURNING symbol, price)
           SELECT up.symbol, up.price - coalesce(b.old, 0) AS change FROM up JOIN before b ON b.s = up.symbol""",
        symbols, [prices[s] for s in symbols], as_of,
    )
    return {r["symbol"]: r["change"] for r in rows if r["change"] != 0}


# ---------------------------------------------------------------- loans, calls, interest

# Every handler that may change a call takes this lock first: shared by the per-account
# handlers (ledger events, borrows), exclusive by the sweeps over many accounts (price ticks,
# deadlines, interest). Rows are then locked in whatever order a statement visits them
# without two transactions ever waiting on each other's rows the other way round.
SWEEP_LOCK = 0x6D31_6D61  # "m1ma"


async def lock_for_account(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", SWEEP_LOCK)


async def lock_for_sweep(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", SWEEP_LOCK)


async def get_account(conn: asyncpg.Connection, account_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    sql = """SELECT account_id, kind, plan, cash, version, loan, loan_version, pending_loans, interest_accrued
             FROM accounts WHERE account_id = $1"""
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), account_id)


async def holdings(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    """The account's non-zero positions that have a price, with the security's own rates."""
    return await conn.fetch(
        """SELECT p.symbol, p.quantity, pr.price, s.initial, s.maintenance
           FROM positions p JOIN prices pr USING (symbol) LEFT JOIN securities s USING (symbol)
           WHERE p.account_id = $1 AND p.quantity <> 0 ORDER BY p.symbol""",
        account_id,
    )


async def apply_loan(conn: asyncpg.Connection, account_id: str, loan: Decimal, cash: Decimal, version: int,
                     booked_at: datetime) -> None:
    """Take a booked loan change: the loan unless a newer loan booking is applied, the cash
    unless a newer cash change is (both come from the same ledger version); and keep it in
    the loan's history (a day's interest is on the loan at the day's end)."""
    await conn.execute(
        """INSERT INTO loan_history (account_id, version, loan, booked_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id, version) DO NOTHING""",
        account_id, version, loan, booked_at,
    )
    await conn.execute(
        """INSERT INTO accounts (account_id, cash, version, loan, loan_version) VALUES ($1, $3, $4, $2, $4)
           ON CONFLICT (account_id) DO UPDATE SET
               loan = CASE WHEN accounts.loan_version < EXCLUDED.loan_version THEN EXCLUDED.loan ELSE accounts.loan END,
               loan_version = greatest(accounts.loan_version, EXCLUDED.loan_version),
               cash = CASE WHEN accounts.version < EXCLUDED.version THEN EXCLUDED.cash ELSE accounts.cash END,
               version = greatest(accounts.version, EXCLUDED.version)""",
        account_id, loan, cash, version,
    )


async def add_loan_request(conn: asyncpg.Connection, loan_id, account_id: str, amount: Decimal,
                           requested_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO loan_requests (loan_id, account_id, amount, requested_at) VALUES ($1, $2, $3, $4)",
        loan_id, account_id, amount, requested_at,
    )
    await conn.execute("UPDATE accounts SET pending_loans = pending_loans + $2 WHERE account_id = $1",
                       account_id, amount)


async def loan_booked(conn: asyncpg.Connection, loan_id) -> None:
    """A requested loan is booked: it no longer counts as pending (once)."""
    await conn.execute(
        """WITH booked AS (UPDATE loan_requests SET status = 'booked' WHERE loan_id = $1 AND status = 'pending'
                           RETURNING account_id, amount)
           UPDATE accounts a SET pending_loans = a.pending_loans - b.amount FROM booked b
           WHERE a.account_id = b.account_id""",
        loan_id,
    )


# Market value and requirement summed again from the positions: at start (the house rates
# may have changed) and for the holders of a security whose requirement changed.
_RECOMPUTE = """
UPDATE accounts a SET market_value = v.mv, requirement = v.req
FROM (SELECT a2.account_id, coalesce(sum(p.quantity * pr.price), 0) AS mv,
             coalesce(sum(p.quantity * pr.price * greatest(coalesce(s.maintenance, $1), $2)), 0) AS req
      FROM accounts a2
      LEFT JOIN positions p ON p.account_id = a2.account_id AND p.quantity <> 0
      LEFT JOIN prices pr ON pr.symbol = p.symbol
      LEFT JOIN securities s ON s.symbol = p.symbol
      WHERE {where}
      GROUP BY a2.account_id) v
WHERE a.account_id = v.account_id AND (a.market_value, a.requirement) IS DISTINCT FROM (v.mv, v.req)
RETURNING a.account_id
"""


async def recompute(conn: asyncpg.Connection, house: Decimal, regulatory: Decimal, *, symbol: str | None = None
                    ) -> list[str]:
    """Sum market values and requirements again (every account's, or the holders' of
    ``symbol``); returns the accounts whose figures changed."""
    if symbol is None:
        rows = await conn.fetch(_RECOMPUTE.format(where="true"), house, regulatory)
    else:
        rows = await conn.fetch(_RECOMPUTE.format(where="a2.account_id IN (SELECT account_id FROM positions "
                                                        "WHERE symbol = $3 AND quantity <> 0)"),
                                house, regulatory, symbol)
    return [r["account_id"] for r in rows]


async def set_requirement(conn: asyncpg.Connection, symbol: str, initial: Decimal | None,
                          maintenance: Decimal | None) -> None:
    await conn.execute(
        """INSERT INTO securities (symbol, initial, maintenance) VALUES ($1, $2, $3)
           ON CONFLICT (symbol) DO UPDATE SET initial = EXCLUDED.initial, maintenance = EXCLUDED.maintenance""",
        symbol, initial, maintenance,
    )


# The equity watch: one statement re-evaluates the margin accounts concerned, issues the
# calls, meets the open calls that recovered, and returns those plus the accounts under the
# hard floor. For a price tick the same statement first moves every holder's market value
# and requirement by the price change (one pass over the holders' rows); otherwise it reads
# the named accounts. Parameters: $1 hard floor, $2 deadline, $3 now, then the source's.
_EVALUATE = """
WITH {source},
ev AS (SELECT account_id, cash, loan, mv, req, mv + cash - loan AS equity FROM val
       WHERE loan > 0 OR EXISTS (SELECT 1 FROM calls c WHERE c.account_id = val.account_id AND c.status = 'open')),
issued AS (
    INSERT INTO calls (call_id, account_id, status, amount_due, market_value, equity, requirement, loan,
                       deadline, issued_at)
    SELECT gen_random_uuid(), account_id, 'open', ceil((req - equity) * 100) / 100, round(mv, 2),
           round(equity, 2), round(req, 2), loan, $2, $3
    FROM ev WHERE loan > 0 AND equity < req
    ON CONFLICT (account_id) WHERE status IN ('open', 'liquidating') DO NOTHING
    RETURNING call_id, account_id, amount_due, market_value, equity, requirement, loan, deadline
),
met AS (
    UPDATE calls c SET status = 'met', closed_at = $3
    FROM ev WHERE c.account_id = ev.account_id AND c.status = 'open' AND ev.equity >= ev.req
    RETURNING c.call_id, c.account_id, round(ev.equity, 2) AS equity, round(ev.req, 2) AS requirement
)
SELECT 'issued' AS change, call_id, account_id, amount_due, market_value, equity, requirement, loan, deadline
FROM issued
UNION ALL
SELECT 'met', call_id, account_id, NULL, NULL, equity, requirement, NULL, NULL FROM met
UNION ALL
SELECT 'floor', NULL, account_id, NULL, round(mv, 2), round(equity, 2), round(req, 2), loan, NULL
FROM ev WHERE loan > 0 AND equity < $1 * mv
"""

# A tick: $4 symbols, $5 their price changes, $6 house rate, $7 regulatory minimum.
_BY_TICK = """val AS (
    UPDATE accounts a SET market_value = a.market_value + d.mv, requirement = a.requirement + d.req
    FROM (SELECT p.account_id, sum(p.quantity * m.change) AS mv,
                 sum(p.quantity * m.change * greatest(coalesce(s.maintenance, $6), $7)) AS req
          FROM unnest($4::text[], $5::numeric[]) AS m(symbol, change)
          JOIN positions p ON p.symbol = m.symbol AND p.quantity <> 0
          LEFT JOIN securities s ON s.symbol = m.symbol
          GROUP BY p.account_id) d
    WHERE a.account_id = d.account_id
    RETURNING a.account_id, a.cash, a.loan, a.market_value AS mv, a.requirement AS req)"""
# Named accounts: $4.
_BY_ACCOUNTS = """val AS (
    SELECT account_id, cash, loan, market_value AS mv, requirement AS req FROM accounts
    WHERE account_id = ANY($4::text[]))"""


async def evaluate(conn: asyncpg.Connection, *, accounts: list[str], hard_floor: Decimal, deadline: datetime,
                   now: datetime) -> list[asyncpg.Record]:
    """Re-evaluate the margin accounts among ``accounts`` in one statement; returns one row
    per change: ``issued``, ``met`` and ``floor`` (equity under the hard floor: to liquidate)."""
    return await conn.fetch(_EVALUATE.format(source=_BY_ACCOUNTS), hard_floor, deadline, now, accounts)


async def tick(conn: asyncpg.Connection, changes: dict[str, Decimal], *, house: Decimal, regulatory: Decimal,
               hard_floor: Decimal, deadline: datetime, now: datetime) -> list[asyncpg.Record]:
    """A price tick: move every holder's market value and requirement by quantity x the
    price change and re-evaluate the margin accounts among them, in one statement (one row
    per holder, whatever else it holds); the rows as ``evaluate``'s."""
    if not changes:
        return []
    symbols = sorted(changes)
    return await conn.fetch(_EVALUATE.format(source=_BY_TICK), hard_floor, deadline, now, symbols,
                            [changes[s] for s in symbols], house, regulatory)


async def margin_accounts(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("""SELECT account_id FROM accounts WHERE loan > 0
                               UNION SELECT account_id FROM calls WHERE status = 'open'""")
    return [r["account_id"] for r in rows]


async def current_call(conn: asyncpg.Connection, account_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    """The account's call in progress (open or liquidating), else its latest."""
    sql = """SELECT call_id, status, amount_due, deadline, issued_at, liquidation_amount, closed_at
             FROM calls WHERE account_id = $1
             ORDER BY (status IN ('open', 'liquidating')) DESC, issued_at DESC, call_id LIMIT 1"""
    return await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), account_id)


async def start_liquidation(conn: asyncpg.Connection, account_id: str, amount: Decimal, reason: str
                            ) -> asyncpg.Record | None:
    """Turn the account's open call into a liquidation; None when it has none open."""
    return await conn.fetchrow(
        """UPDATE calls SET status = 'liquidating', liquidation_amount = $2, liquidation_reason = $3
           WHERE account_id = $1 AND status = 'open' RETURNING call_id""",
        account_id, amount, reason,
    )


async def due_calls(conn: asyncpg.Connection, at: datetime) -> list[str]:
    rows = await conn.fetch(
        "SELECT account_id FROM calls WHERE status = 'open' AND deadline <= $1 ORDER BY account_id", at)
    return [r["account_id"] for r in rows]


# ---------------------------------------------------------------- a liquidation's own sells
# (domain.settle_liquidations). The handlers that change them lock the account's row first,
# so the pie's answer, its intents and the fills of one account are matched one at a time
# whatever order they arrive in.


async def lock_account(conn: asyncpg.Connection, account_id: str) -> None:
    await conn.execute("SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE", account_id)


async def record_liquidation_answer(conn: asyncpg.Connection, account_id: str, call_id, planned: Decimal,
                                    batch_id, *, legacy: bool = False) -> None:
    """The pie's answer to a call's liquidation (pie.cash.raising, request id = call id): the
    dollars planned and the batch of its sells; once. Not a call of this account: nothing.
    ``legacy``: the answer names no sells (a pie from before it did): the account's next
    sells close the call."""
    await conn.execute(
        """UPDATE calls SET planned = $3, batch_id = $4, legacy = legacy OR $5
           WHERE call_id = $1 AND account_id = $2 AND planned IS NULL""",
        call_id, account_id, planned, batch_id, legacy)


async def record_liquidation_intents(conn: asyncpg.Connection, account_id: str, batch_id, intent_ids: list
                                     ) -> bool:
    """Keep the sells of a liquidation's batch (the pie's answer names them) while the
    account has a call liquidating; True when kept."""
    status = await conn.execute(
        """INSERT INTO liquidation_intents (intent_id, batch_id, account_id)
           SELECT i, $2, $1 FROM unnest($3::uuid[]) AS i
           WHERE EXISTS (SELECT 1 FROM calls WHERE account_id = $1 AND status = 'liquidating')
           ON CONFLICT (intent_id) DO NOTHING""",
        account_id, batch_id, intent_ids)
    return status != "INSERT 0 0"


async def record_sells(conn: asyncpg.Connection, account_id: str, window_id, sells: list[tuple]) -> bool:
    """Keep the sells of a booked fills batch, (intent id, amount), that may be a
    liquidation's: all of them while the account has a call liquidating, else those of a
    liquidation's intents (carried over). True when any was kept (the common case: none, one
    statement)."""
    status = await conn.execute(
        """INSERT INTO liquidation_sells (window_id, intent_id, account_id, amount)
           SELECT $2, s.intent_id, $1, s.amount FROM unnest($3::uuid[], $4::numeric[]) AS s(intent_id, amount)
           WHERE EXISTS (SELECT 1 FROM calls WHERE account_id = $1 AND status = 'liquidating')
              OR EXISTS (SELECT 1 FROM liquidation_intents i WHERE i.intent_id = s.intent_id)
           ON CONFLICT (window_id, intent_id) DO NOTHING""",
        account_id, window_id, [i for i, _ in sells], [a for _, a in sells])
    return status != "INSERT 0 0"


async def record_rejections(conn: asyncpg.Connection, account_id: str, window_id, reasons: dict[str, str]) -> bool:
    """Keep the window's rejections of the account's intents (intent id -> reason) while it
    has a call liquidating (they may be its sells); True when any was kept (the common case:
    none, one statement)."""
    ids = sorted(reasons)
    status = await conn.execute(
        """INSERT INTO liquidation_rejections (intent_id, account_id, window_id, reason)
           SELECT r.intent_id::uuid, $1, $2, r.reason FROM unnest($3::text[], $4::text[]) AS r(intent_id, reason)
           WHERE EXISTS (SELECT 1 FROM calls WHERE account_id = $1 AND status = 'liquidating')
           ON CONFLICT (intent_id) DO NOTHING""",
        account_id, window_id, ids, [reasons[i] for i in ids])
    return status != "INSERT 0 0"


async def liquidations(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    """The account's calls liquidating, and those liquidated whose sells the pie named (their
    sells carried over may still fill), in call order; as ``domain.Liquidation`` fields
    (``rejected``: the batch's intents are known and the window rejected every one)."""
    return await conn.fetch(
        """SELECT call_id, status = 'liquidating' AS liquidating, liquidation_amount AS amount, raised, planned,
                  batch_id, n.intents > 0 AS known, n.intents > 0 AND n.rejected = n.intents AS rejected, legacy
           FROM calls c CROSS JOIN LATERAL (
               SELECT count(*) AS intents, count(r.intent_id) AS rejected
               FROM liquidation_intents i LEFT JOIN liquidation_rejections r USING (intent_id)
               WHERE i.batch_id = c.batch_id) n
           WHERE account_id = $1 AND (status = 'liquidating' OR batch_id IS NOT NULL)
           ORDER BY issued_at, call_id""",
        account_id)


async def sells_kept(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    """The account's kept sells with their intent's liquidation batch (NULL: none known); as
    ``domain.SellBooked`` fields."""
    return await conn.fetch(
        """SELECT s.window_id, s.intent_id, s.amount, i.batch_id FROM liquidation_sells s
           LEFT JOIN liquidation_intents i USING (intent_id)
           WHERE s.account_id = $1 ORDER BY s.window_id, s.intent_id""",
        account_id)


async def count_raised(conn: asyncpg.Connection, call_id, proceeds: Decimal, closes: bool, now: datetime) -> None:
    """Add a liquidation's proceeds to what it raised; ``closes``: the call is liquidated now."""
    await conn.execute(
        """UPDATE calls SET raised = raised + $2,
               status = CASE WHEN $3 THEN 'liquidated' ELSE status END,
               closed_at = CASE WHEN $3 THEN $4 ELSE closed_at END
           WHERE call_id = $1""",
        call_id, proceeds, closes, now)


async def forget_sells(conn: asyncpg.Connection, account_id: str, counted: list[tuple], *, rest: bool) -> None:
    """Drop the kept sells ``counted`` (window id, intent id); with ``rest`` (no liquidation
    of the account waits to know its own sells) every other kept sell of the account too,
    the intents that are no call's (kept, before the pie's answer named a liquidation's
    sells, from every batch at the liquidation priority), and the window's rejections of
    intents that are no call's."""
    if rest:
        await conn.execute("DELETE FROM liquidation_sells WHERE account_id = $1", account_id)
        await conn.execute(
            """DELETE FROM liquidation_intents i WHERE i.account_id = $1
               AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.batch_id = i.batch_id)""",
            account_id)
        await conn.execute(
            """DELETE FROM liquidation_rejections r WHERE r.account_id = $1
               AND NOT EXISTS (SELECT 1 FROM liquidation_intents i WHERE i.intent_id = r.intent_id)""",
            account_id)
    elif counted:
        await conn.execute(
            """DELETE FROM liquidation_sells s USING unnest($2::uuid[], $3::uuid[]) AS c(window_id, intent_id)
               WHERE s.account_id = $1 AND s.window_id = c.window_id AND s.intent_id = c.intent_id""",
            account_id, [w for w, _ in counted], [i for _, i in counted])


async def accrue_day(conn: asyncpg.Connection, day, end: datetime, plus_rate: Decimal, basic_rate: Decimal,
                     now: datetime) -> int | None:
    """Accrue one day's interest on every loan as it was at ``end``, the day's end (its last
    change booked before then), in one statement; None when the day was accrued before."""
    inserted = await conn.fetchval(
        """INSERT INTO interest_days (day, accrued_accounts, done_at) VALUES ($1, 0, $2)
           ON CONFLICT (day) DO NOTHING RETURNING day""", day, now)
    if inserted is None:
        return None
    count = int((await conn.execute(
        """UPDATE accounts a SET interest_accrued = a.interest_accrued
               + l.loan * CASE WHEN a.plan = 'plus' THEN $1::numeric ELSE $2::numeric END / 365
           FROM (SELECT DISTINCT ON (account_id) account_id, loan FROM loan_history WHERE booked_at < $3
                 ORDER BY account_id, version DESC) l
           WHERE a.account_id = l.account_id AND l.loan > 0""", plus_rate, basic_rate, end)).split()[-1])
    await conn.execute("UPDATE interest_days SET accrued_accounts = $2 WHERE day = $1", day, count)
    return count


async def day_done(conn: asyncpg.Connection, day) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT accrued_accounts, charged_accounts, charged FROM interest_days WHERE day = $1", day)


async def last_accrued_day(conn: asyncpg.Connection):
    return await conn.fetchval("SELECT max(day) FROM interest_days")


async def take_charges(conn: asyncpg.Connection, period: str, now: datetime) -> list[asyncpg.Record]:
    """The month's charges: every account's accrued interest rounded down to the cent (the
    remainder stays accrued), recorded once per account and period."""
    return await conn.fetch(
        """WITH due AS (
               SELECT account_id, trunc(interest_accrued, 2) AS amount FROM accounts
               WHERE interest_accrued >= 0.01 ORDER BY account_id FOR UPDATE),
           charged AS (
               INSERT INTO interest_charges (account_id, period, charge_id, amount, charged_at)
               SELECT account_id, $1, gen_random_uuid(), amount, $2 FROM due
               ON CONFLICT (account_id, period) DO NOTHING
               RETURNING account_id, charge_id, amount),
           taken AS (
               UPDATE accounts a SET interest_accrued = a.interest_accrued - c.amount
               FROM charged c WHERE a.account_id = c.account_id RETURNING a.account_id)
           SELECT c.account_id, c.charge_id, c.amount FROM charged c ORDER BY c.account_id""",
        period, now,
    )


async def record_charges(conn: asyncpg.Connection, day, accounts: int, total: Decimal) -> None:
    await conn.execute("UPDATE interest_days SET charged_accounts = $2, charged = $3 WHERE day = $1",
                       day, accounts, total)
