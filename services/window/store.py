"""The window's SQL. Parameters only; the caller owns the transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from decimal import Decimal

from services.window import domain
from shared.db import bulk_memory
from shared.contracts import Execution, Fill, Intent, NetOrder, Residue, Side

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
        """INSERT INTO submitted_intents (intent_id, batch_id, account_id, symbol, side, amount, quantity, source,
                                          created_at)
           SELECT i, $1, a, s, d, m, q, o, $9
           FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::numeric[], $8::text[])
                AS t(i, a, s, d, m, q, o)
           WHERE NOT EXISTS (SELECT 1 FROM window_intents w WHERE w.intent_id = t.i)
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


async def bulk_plans(conn: asyncpg.Connection) -> None:
    """For the rest of the transaction, join by hashing or merging, never by nested loops: a
    window's statements run over all of its intents, and the planner's estimates for rows
    that just arrived (a million can be COPY'd in at once) or were just frozen are far off, so
    it picked nested loops that ran a million index probes each (tens of seconds). Sorts and
    hashes get the room of ``shared.db.bulk_memory``."""
    await conn.execute("SET LOCAL enable_nestloop = off")
    await bulk_memory(conn)


async def set_account(conn: asyncpg.Connection, account_id: str, plan: str) -> None:
    await conn.execute("""INSERT INTO accounts (account_id, plan) VALUES ($1, $2)
                          ON CONFLICT (account_id) DO UPDATE SET plan = EXCLUDED.plan""", account_id, plan)


async def set_session(conn: asyncpg.Connection, account_id: str, session: str) -> None:
    await conn.execute("""INSERT INTO accounts (account_id, session) VALUES ($1, $2)
                          ON CONFLICT (account_id) DO UPDATE SET session = EXCLUDED.session""", account_id, session)


async def set_position(conn: asyncpg.Connection, account_id: str, symbol: str, quantity: Decimal,
                       version: int) -> None:
    await conn.execute(
        """INSERT INTO positions (account_id, symbol, quantity, version) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity, version = EXCLUDED.version
           WHERE positions.version < EXCLUDED.version""", account_id, symbol, quantity, version)


async def set_prices(conn: asyncpg.Connection, prices: dict[str, Decimal]) -> None:
    symbols = sorted(prices)
    await conn.execute(
        """INSERT INTO prices (symbol, price) SELECT s, p FROM unnest($1::text[], $2::numeric[]) AS t(s, p)
           ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price""", symbols, [prices[x] for x in symbols])


async def schedule_started(conn: asyncpg.Connection, now: datetime) -> datetime:
    """When the schedule first ran (recorded now on the first call): earlier slots are not owed."""
    await conn.execute("INSERT INTO schedule (id, started_at) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", now)
    return await conn.fetchval("SELECT started_at FROM schedule WHERE id = 1")


async def schedule_began(conn: asyncpg.Connection) -> datetime | None:
    """When the schedule first ran (None before it has)."""
    return await conn.fetchval("SELECT started_at FROM schedule WHERE id = 1")


async def last_slot_ran(conn: asyncpg.Connection) -> datetime | None:
    """When the latest scheduled window that ran started (None before any)."""
    return await conn.fetchval("SELECT max(starts_at) FROM slots")


async def record_slot(conn: asyncpg.Connection, starts_at: datetime, session: str, window_id: UUID | None,
                      ran_at: datetime) -> None:
    await conn.execute("INSERT INTO slots (starts_at, session, window_id, ran_at) VALUES ($1, $2, $3, $4)",
                       starts_at, session, window_id, ran_at)


# Funding tier of a buy (services/window/domain.py PRIORITY).
_TIER = "CASE source WHEN 'liquidation' THEN 0 WHEN 'order' THEN 1 ELSE 2 END"


# The last price a frozen intent was funded at: its order's
# (``insert_net_orders``), or the window's price now before the window has orders. Over
# ``window_intents i`` with ``_LAST_PRICE_JOIN`` (window id ``$1``).
_LAST_PRICE = "lp.price"
_LAST_PRICE_JOIN = """LEFT JOIN (SELECT symbol, last_price AS price FROM orders WHERE window_id = $1
                                 UNION ALL
                                 SELECT symbol, price FROM prices p WHERE NOT EXISTS (
                                     SELECT 1 FROM orders o WHERE o.window_id = $1 AND o.symbol = p.symbol)) lp
                             ON lp.symbol = i.symbol"""


# What an account's sells of one security raise as funding counts them, as an aggregate over
# the group of its intents (columns side, amount, sell_q: a share sell's quantity, held,
# price; grouped by account, symbol, held and price): share sells at the last price less the
# margin; dollar sells in full, but no more than the shares its share sells leave (less a
# share step per dollar sell but one) are worth at that price (domain.dollar_sells_proceeds).
_GROUP_PROCEEDS = """
    coalesce(sum(floor(sell_q * coalesce(price, 0) * (1 - {margin}::numeric) * 100) / 100)
             FILTER (WHERE side = 'sell'), 0)
    + CASE WHEN held IS NULL OR price IS NULL THEN coalesce(sum(amount) FILTER (WHERE side = 'sell'), 0)
           ELSE least(coalesce(sum(amount) FILTER (WHERE side = 'sell'), 0),
                      floor(greatest(held - coalesce(sum(sell_q) FILTER (WHERE side = 'sell'), 0)
                                     - greatest(count(amount) FILTER (WHERE side = 'sell') - 1, 0) * 0.00001, 0)
                            * price * (1 - {margin}::numeric) * 100) / 100) END"""


# Funding over the intents of CTE ``t`` (intent_id, account_id, symbol, side, amount,
# quantity, created_at, tier, cash, price, held, and any other columns to carry through);
# services/window/domain.py ``fund`` is the reference. Yields CTE ``ok``: per intent the
# columns of ``t`` with its funded amount or quantity, whether it is taken, and why not. The
# intents' columns ride along, so that no join back to them (a million-row sort) is needed.
# Placeholders name the statement's parameters.
_FUNDING = """
    -- the sells of an account and security, in order: share sells share what it holds (q);
    -- dollar sells (a) what the shares the share sells leave are worth at the lowest price
    -- the venue may fill at (domain.dollar_sells_proceeds), so the venue never sells more
    ss AS (SELECT intent_id,
                  CASE WHEN amount IS NOT NULL THEN NULL
                       WHEN held IS NULL THEN quantity
                       ELSE least(cum_q, greatest(held, 0)) - least(cum_q - quantity, greatest(held, 0)) END AS q,
                  CASE WHEN amount IS NULL THEN NULL
                       WHEN held IS NULL OR price IS NULL THEN amount
                       ELSE least(cum_a, worth) - least(cum_a - amount, worth) END AS a
           FROM (SELECT *, floor(greatest(held - least(all_q, greatest(held, 0)) - greatest(n - 1, 0) * 0.00001, 0)
                                 * price * (1 - {margin}::numeric) * 100) / 100 AS worth
                 FROM (SELECT intent_id, quantity, amount, held, price,
                              sum(quantity) OVER pair AS cum_q, sum(amount) OVER pair AS cum_a,
                              coalesce(sum(quantity) OVER whole, 0) AS all_q, count(amount) OVER whole AS n
                       FROM t WHERE side = 'sell'
                       WINDOW pair AS (PARTITION BY account_id, symbol ORDER BY created_at, intent_id),
                              whole AS (pair ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) y) x),
    v AS (SELECT t.*, ss.q AS sell_q, ss.a AS sell_a,
                 CASE WHEN t.side = 'buy' AND t.amount IS NULL AND t.price IS NOT NULL
                      THEN ceil(t.quantity * t.price * (1 + {margin}::numeric) * 100) / 100 END AS share_cost
          FROM t LEFT JOIN ss USING (intent_id)),
    -- per account, its sells' proceeds as funding counts them
    sp AS (SELECT account_id, sum(proceeds) AS proceeds
           FROM (SELECT account_id, """ + _GROUP_PROCEEDS + """ AS proceeds
                 FROM (SELECT t.*, ss.q AS sell_q FROM t LEFT JOIN ss USING (intent_id) WHERE t.side = 'sell') sells
                 GROUP BY account_id, symbol, held, price) g
           GROUP BY account_id),
    w AS (SELECT v.*,
                 cash + coalesce(sp.proceeds, 0) AS available,
                 sum(CASE WHEN side = 'buy' THEN coalesce(amount, share_cost, 0) ELSE 0 END)
                     OVER (PARTITION BY account_id, tier) AS demand,
                 coalesce(sum(CASE WHEN side = 'buy' THEN coalesce(amount, share_cost, 0) ELSE 0 END)
                              OVER (PARTITION BY account_id ORDER BY tier
                                    RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
          FROM v LEFT JOIN sp USING (account_id)),
    funded AS (SELECT w.*,
                      CASE WHEN amount IS NULL THEN NULL
                           WHEN side = 'sell' THEN sell_a
                           WHEN available - before >= demand THEN amount
                           WHEN available - before <= 0 THEN 0
                           ELSE div(amount * (available - before) * 100, demand) / 100
                      END AS funded_amount,
                      CASE WHEN amount IS NOT NULL THEN NULL
                           WHEN side = 'sell' THEN nullif(sell_q, 0)
                           WHEN share_cost IS NOT NULL AND available - before >= demand THEN quantity
                      END AS funded_quantity,
                      CASE WHEN side = 'sell' THEN {not_held} WHEN amount IS NOT NULL THEN {under_minimum}
                           ELSE {shares_unfunded} END AS why
               FROM w),
    ok AS (SELECT *, (funded_amount >= 1 OR (side = 'sell' AND funded_amount > 0) OR funded_quantity > 0) AS taken
           FROM funded)"""


# Per (account, symbol) the shares sold in other windows (ids ``{windows}``: those unfinished
# when the freeze began) that the positions do not show yet: the frozen sells of a window not
# allocated yet, as many shares as they may deliver (a dollar sell's amount at the lowest
# price its window funded it at, no more than the shares held then), and the sell fills of an
# allocated window whose batch of the account the ledger has not booked (booking a batch
# updates the positions and records the batch in one transaction). ``{margin}``: the
# funding's price margin.
_UNBOOKED_SELLS = """
    unbooked AS (
        SELECT account_id, symbol, sum(q) AS q FROM (
            SELECT i.account_id, i.symbol,
                   coalesce(i.funded_quantity,
                            least(coalesce(i.held, 0),
                                  ceil(i.funded_amount / (coalesce(o.last_price, pr.price) * (1 - {margin}::numeric))
                                       * 100000) / 100000)) AS q
            FROM window_intents i JOIN windows w ON w.window_id = i.window_id
            LEFT JOIN orders o ON o.window_id = i.window_id AND o.symbol = i.symbol
            LEFT JOIN prices pr ON pr.symbol = i.symbol
            WHERE i.window_id = ANY({windows}) AND w.status IN ('holding', 'executing')
              AND i.status = 'frozen' AND i.side = 'sell'
            UNION ALL
            SELECT f.account_id, f.symbol, f.quantity
            FROM (SELECT f.window_id, f.account_id, f.symbol, f.side, f.quantity,
                         (dense_rank() OVER (PARTITION BY f.window_id ORDER BY f.account_id) - 1)
                         / w.batch_accounts AS batch
                  FROM fills f JOIN windows w ON w.window_id = f.window_id
                  WHERE f.window_id = ANY({windows}) AND w.status = 'allocated'
                    AND w.batch_accounts IS NOT NULL) f
            WHERE f.side = 'sell'
              AND NOT EXISTS (SELECT 1 FROM booked_batches b WHERE b.window_id = f.window_id AND b.batch = f.batch)
        ) s
        GROUP BY account_id, symbol)"""


async def unfinished_windows(conn: asyncpg.Connection, window_id: UUID) -> list[UUID]:
    """The windows other than ``window_id`` whose sells the positions may not show yet: the
    unfinished ones (``_UNFINISHED``: not allocated, or allocated with fills batches the
    ledger has not booked; usually none)."""
    return await conn.fetchval(
        f"""SELECT coalesce(array_agg(w.window_id), '{{}}') FROM windows w
            CROSS JOIN LATERAL (SELECT count(*)::int AS booked FROM booked_batches bb
                                WHERE bb.window_id = w.window_id) b
            WHERE w.window_id <> $1 AND {_UNFINISHED}""",
        window_id)


def _eligible(started: str, session: str, equity: str, other: str, among: str = "") -> str:
    """The CTEs ``pend`` and ``eligible`` (account_id, cutoff) of a window's run: per account
    with intents pending when the window started (``started``), until when it takes what was
    pending: ``started`` if it trades in ``session`` (services/window/domain.py ``trades_in``,
    equity: cash plus positions at the last prices less the loan;
    every account when ``session`` is NULL: an operator's close), else ``other``, when a missed
    window of the other session started (NULL: not in this run). ``among``: a further
    condition on the pending intents looked at."""
    return f"""pend AS (SELECT DISTINCT account_id FROM submitted_intents
                           WHERE status = 'pending' AND created_at <= {started}{among}),
                 -- per account, until when it takes what was pending (none: not in this run)
                 eligible AS (
                     SELECT account_id, cutoff FROM (
                         SELECT pend.account_id,
                                CASE WHEN {session}::text IS NULL OR a.plan = 'plus'
                                          OR coalesce(a.session, 'morning') = {session}
                                          OR coalesce(c.cash, 0) - coalesce(l.loan, 0)
                                             + coalesce((SELECT sum(p.quantity * pr.price) FROM positions p
                                                         JOIN prices pr USING (symbol)
                                                         WHERE p.account_id = pend.account_id), 0) >= {equity}
                                     THEN {started}
                                     ELSE {other}::timestamptz END AS cutoff
                         FROM pend LEFT JOIN accounts a USING (account_id) LEFT JOIN cash c USING (account_id)
                              LEFT JOIN loans l USING (account_id)) e
                     WHERE cutoff IS NOT NULL)"""


async def freeze_and_fund(conn: asyncpg.Connection, window_id: UUID, started_at: datetime, session: str | None,
                          both_windows_equity: Decimal, under_minimum: str, *, other_started_at: datetime | None = None,
                          not_held: str = domain.NOT_HELD, shares_unfunded: str = domain.SHARES_UNFUNDED,
                          margin: Decimal = domain.SHARE_PRICE_MARGIN) -> int:
    """Freeze and fund a window in one statement; returns how many intents it took.

    Freeze: every intent pending when the window started, of the accounts that trade in
    ``session`` (every account when None: an operator's close); services/window/domain.py
    ``trades_in`` is the rule. A run that also takes a missed window of the other session
    (``other_started_at``: when it started) takes the intents the accounts trading only in
    that one had pending then. Fund (``domain.fund`` is the reference): dollar sells in full,
    share sells up to the shares held (in intent order; held: the position less what other
    windows sold that the ledger has not booked, ``_UNBOOKED_SELLS``); each account's buys by tier from its
    cash plus its sells' proceeds (share sells at the last price less ``margin``), the first
    tier short of money has its dollar buys scaled pro rata (cents rounded down, exactly,
    with ``div``) and its share buys (at the last price plus ``margin``) rejected, later tiers
    nothing; a dollar buy funded under $1 is rejected with ``under_minimum``."""
    funding = _FUNDING.format(margin="$8", under_minimum="$5", not_held="$6", shares_unfunded="$7")
    eligible = _eligible(started="$2", session="$3", equity="$4", other="$9")
    unbooked = _UNBOOKED_SELLS.format(windows="$10::uuid[]", margin="$8")
    others = await unfinished_windows(conn, window_id)
    result = await conn.execute(
        f"""WITH {eligible},
                 -- re-checked on rows changed under the statement: an intent cancelled by a
                 -- transaction that committed meanwhile stays cancelled
                 taken AS (DELETE FROM submitted_intents i USING eligible e
                           WHERE i.status = 'pending' AND i.account_id = e.account_id AND i.created_at <= e.cutoff
                           RETURNING i.*),
                 reserved AS (SELECT account_id, sum(amount) AS amount FROM reservations
                              WHERE account_id IN (SELECT account_id FROM eligible) GROUP BY account_id),
                 {unbooked},
                 t AS (SELECT i.intent_id, i.account_id, i.symbol, i.side, i.amount, i.quantity, i.created_at,
                              {_TIER} AS tier, coalesce(c.cash, 0) - coalesce(r.amount, 0) AS cash, pr.price,
                              p.quantity - coalesce(u.q, 0) AS held, i.batch_id, i.source
                       FROM taken i LEFT JOIN cash c ON c.account_id = i.account_id
                       LEFT JOIN reserved r ON r.account_id = i.account_id
                       LEFT JOIN prices pr ON pr.symbol = i.symbol
                       LEFT JOIN positions p ON p.account_id = i.account_id AND p.symbol = i.symbol
                       LEFT JOIN unbooked u ON u.account_id = i.account_id AND u.symbol = i.symbol),
                 {funding}
            -- in key order: the key's index is written page by page, not at random
            INSERT INTO window_intents (intent_id, batch_id, account_id, symbol, side, amount, quantity, source,
                                        status, window_id, reason, created_at, funded_amount, funded_quantity, held)
            SELECT intent_id, batch_id, account_id, symbol, side, amount, quantity, source,
                   CASE WHEN taken THEN 'frozen' ELSE 'rejected' END, $1,
                   CASE WHEN taken THEN NULL ELSE why END, created_at,
                   CASE WHEN taken THEN funded_amount END, CASE WHEN taken THEN funded_quantity END,
                   CASE WHEN taken AND side = 'sell' THEN held END
            FROM ok
            ORDER BY intent_id""",
        window_id, started_at, session, both_windows_equity, under_minimum, not_held, shares_unfunded, margin,
        other_started_at, others)
    return int(result.split()[-1])


async def fund_again(conn: asyncpg.Connection, window_id: UUID, accounts: Sequence[str],
                     reason: str = domain.HALTED_FUNDING, cash: dict[str, Decimal] | None = None,
                     margin: Decimal = domain.SHARE_PRICE_MARGIN) -> list[asyncpg.Record]:
    """Fund the window's frozen intents of ``accounts`` again: without the sells carried over
    (halted), or from the cash the ledger reports for them (``cash``, instead of the window's
    view). Buys the missing money paid for are scaled down or rejected with ``reason`` (after
    a halt the venue already bought for them: the firm's residue keeps those shares). The
    same funding as the freeze, over the funded amounts, the positions seen then and the
    last prices its orders were funded at, so an account whose funding did not depend on
    what is missing keeps every amount. Returns per
    account the intents rejected now, with the reason."""
    funding = _FUNDING.format(margin="$4", under_minimum="$3", not_held="$3", shares_unfunded="$3")
    cash = cash or {}
    return await conn.fetch(
        f"""WITH reserved AS (SELECT account_id, sum(amount) AS amount FROM reservations
                              WHERE account_id = ANY($2::text[]) AND window_id <> $1 GROUP BY account_id),
                 told AS (SELECT * FROM unnest($5::text[], $6::numeric[]) AS t(account_id, cash)),
                 t AS (SELECT i.intent_id, i.account_id, i.symbol, i.side, i.funded_amount AS amount,
                              i.funded_quantity AS quantity, i.created_at, {_TIER} AS tier,
                              coalesce(o.cash, coalesce(c.cash, 0) - coalesce(r.amount, 0)) AS cash,
                              {_LAST_PRICE} AS price, i.held
                       FROM window_intents i LEFT JOIN cash c ON c.account_id = i.account_id
                       LEFT JOIN reserved r ON r.account_id = i.account_id
                       LEFT JOIN told o ON o.account_id = i.account_id
                       {_LAST_PRICE_JOIN}
                       WHERE i.window_id = $1 AND i.status = 'frozen' AND i.account_id = ANY($2::text[])),
                 {funding},
                 changed AS (
                     UPDATE window_intents i
                     SET funded_amount = CASE WHEN ok.taken THEN ok.funded_amount END,
                         funded_quantity = CASE WHEN ok.taken THEN ok.funded_quantity END,
                         status = CASE WHEN ok.taken THEN 'frozen' ELSE 'rejected' END,
                         reason = CASE WHEN ok.taken THEN NULL ELSE ok.why END
                     FROM ok
                     WHERE i.intent_id = ok.intent_id
                       AND (NOT ok.taken OR ok.funded_amount IS DISTINCT FROM i.funded_amount
                            OR ok.funded_quantity IS DISTINCT FROM i.funded_quantity)
                     RETURNING i.intent_id, i.account_id, i.status, i.reason)
            SELECT account_id, jsonb_object_agg(intent_id, reason) AS reasons FROM changed
            WHERE status = 'rejected' GROUP BY account_id ORDER BY account_id""",
        window_id, list(accounts), reason, margin, sorted(cash), [cash[a] for a in sorted(cash)])


# What a frozen buy counts for against cash, as the funding counted it (a share buy at the
# last price plus the margin, ``{margin}``).
_BUY_COST = ("coalesce(i.funded_amount, ceil(i.funded_quantity * coalesce(" + _LAST_PRICE + ", 0)"
             " * (1 + {margin}::numeric) * 100) / 100)")


async def reserve(conn: asyncpg.Connection, window_id: UUID, accounts: Sequence[str] | None = None,
                  margin: Decimal = domain.SHARE_PRICE_MARGIN) -> None:
    """Hold each account's funded buys of a frozen window against its cash (share buys at
    the last price plus ``margin``) until the ledger has booked the window's fills: of every
    account, or again of ``accounts`` (after their buys were funded again)."""
    if accounts is not None:
        await conn.execute("DELETE FROM reservations WHERE window_id = $1 AND account_id = ANY($2::text[])",
                           window_id, list(accounts))
    await conn.execute(
        f"""INSERT INTO reservations (account_id, window_id, amount)
           SELECT account_id, $1, amount
           FROM (SELECT i.account_id, sum({_BUY_COST.format(margin="$2")}) AS amount
                 FROM window_intents i {_LAST_PRICE_JOIN}
                 WHERE i.window_id = $1 AND i.status = 'frozen' AND i.side = 'buy'
                   AND ($3::text[] IS NULL OR i.account_id = ANY($3::text[]))
                 GROUP BY i.account_id) r
           WHERE amount > 0""",
        window_id, margin, None if accounts is None else list(accounts))


async def cash_holds_json(conn: asyncpg.Connection, window_id: UUID, margin: Decimal = domain.SHARE_PRICE_MARGIN
                          ) -> str:
    """The window's ``HoldWindowCash.holds`` as a JSON array, built by PostgreSQL: per account
    with frozen buys (in order), what they take from its own cash, their cost less its sells'
    proceeds as the funding counted them, or 0 when the sells pay for them all (the ledger
    then still says whether held withdrawals or a negative balance have a claim on those
    proceeds first)."""
    return await conn.fetchval(
        f"""-- an account's buys form one group (no symbol, holding or price), its sells one per security
            WITH v AS (SELECT i.account_id, i.side, i.funded_amount AS amount, i.held,
                              CASE WHEN i.side = 'sell' THEN i.symbol END AS symbol,
                              CASE WHEN i.side = 'sell' THEN i.funded_quantity END AS sell_q,
                              CASE WHEN i.side = 'sell' THEN {_LAST_PRICE} END AS price,
                              CASE WHEN i.side = 'buy' THEN {_BUY_COST.format(margin="$2")} END AS cost
                       FROM window_intents i {_LAST_PRICE_JOIN}
                       WHERE i.window_id = $1 AND i.status = 'frozen'),
                 need AS (SELECT account_id, greatest(sum(cost - proceeds), 0)::numeric(16, 2) AS need,
                                 sum(cost) AS cost
                          FROM (SELECT account_id, coalesce(sum(cost), 0) AS cost,
                                       {_GROUP_PROCEEDS.format(margin="$2")} AS proceeds
                                FROM v GROUP BY account_id, symbol, held, price) g
                          GROUP BY account_id)
           SELECT coalesce(json_agg(json_build_array(account_id, need::text) ORDER BY account_id), '[]'::json)::text
           FROM need WHERE cost > 0""",
        window_id, margin)


async def set_status(conn: asyncpg.Connection, window_id: UUID, status: str) -> None:
    await conn.execute("UPDATE windows SET status = $2 WHERE window_id = $1", window_id, status)


async def reserve_fills(conn: asyncpg.Connection, window_id: UUID) -> None:
    """Replace a window's reservations by what its buys' fills cost (the ledger books those)."""
    await conn.execute("DELETE FROM reservations WHERE window_id = $1", window_id)
    await conn.execute(
        """INSERT INTO reservations (account_id, window_id, amount)
           SELECT account_id, $1, sum(amount) FROM fills WHERE window_id = $1 AND side = 'buy'
           GROUP BY account_id HAVING sum(amount) > 0""", window_id)


async def apply_fills_booked(conn: asyncpg.Connection, window_id: UUID, booked: str | bytes) -> None:
    """A batch of the window's fills booked by the ledger, for many accounts at once, in one
    statement: each account's cash and complete positions as of its version (newer rows stay;
    a symbol it no longer holds goes to zero; a late, older list adds no symbol a newer list
    left out), and the cash its buys in the window held is released. ``booked`` is the
    ``ledger.fills.booked`` body as it arrived (validated against the contract), read by
    PostgreSQL: the window's Python encodes no value per account."""
    await conn.execute(
        """WITH a AS MATERIALIZED (
                    SELECT x->>'account_id' AS a, (x->>'cash')::numeric AS c, (x->>'version')::bigint AS v,
                           x->'positions' AS p
                    FROM json_array_elements($2::json -> 'accounts') AS x),
                listed AS MATERIALIZED (SELECT a.a, e.key AS s, e.value::numeric AS q, a.v
                                        FROM a CROSS JOIN LATERAL json_each_text(a.p) AS e),
                cash_set AS (INSERT INTO cash (account_id, cash, version)
                             SELECT a, c, v FROM a ORDER BY a
                             ON CONFLICT (account_id) DO UPDATE SET cash = EXCLUDED.cash, version = EXCLUDED.version
                             WHERE cash.version < EXCLUDED.version),
                lists AS (INSERT INTO position_lists (account_id, version)
                          SELECT a, v FROM a ORDER BY a
                          ON CONFLICT (account_id) DO UPDATE SET version = EXCLUDED.version
                          WHERE position_lists.version < EXCLUDED.version),
                -- a symbol with no row is added only by a list newer than the last one
                -- applied, which did not hold it (every CTE sees the tables as they were)
                moved AS (INSERT INTO positions (account_id, symbol, quantity, version)
                          SELECT l.a, l.s, l.q, l.v FROM listed l
                          WHERE l.v > coalesce((SELECT version FROM position_lists WHERE account_id = l.a), 0)
                             OR EXISTS (SELECT 1 FROM positions p WHERE p.account_id = l.a AND p.symbol = l.s)
                          ORDER BY l.a, l.s
                          ON CONFLICT (account_id, symbol) DO UPDATE
                          SET quantity = EXCLUDED.quantity, version = EXCLUDED.version
                          WHERE positions.version < EXCLUDED.version),
                zeroed AS (UPDATE positions p SET quantity = 0, version = a.v
                           FROM a
                           WHERE p.account_id = a.a AND p.version < a.v
                             AND NOT EXISTS (SELECT 1 FROM listed l WHERE l.a = p.account_id AND l.s = p.symbol))
           DELETE FROM reservations r USING a WHERE r.window_id = $1 AND r.account_id = a.a""",
        window_id, booked.decode() if isinstance(booked, bytes) else booked)


async def window_exists(conn: asyncpg.Connection, window_id: UUID) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM windows WHERE window_id = $1)", window_id)


async def record_booked_batch(conn: asyncpg.Connection, window_id: UUID, batch: int, now: datetime) -> None:
    """The ledger booked this fills batch of the window (a replayed one is recorded once)."""
    await conn.execute("""INSERT INTO booked_batches (window_id, batch, booked_at) VALUES ($1, $2, $3)
                          ON CONFLICT DO NOTHING""", window_id, batch, now)


# A window waits while it holds or executes, or while the ledger has not booked all its
# fills batches (counted only for windows allocated since the window counts them).
_UNFINISHED = """(w.status IN ('holding', 'executing')
                  OR (w.status = 'allocated' AND w.booking_tracked AND w.batches > b.booked))"""


async def latest_windows(conn: asyncpg.Connection, *, unfinished: bool, limit: int,
                         closed_before: datetime | None = None) -> list[asyncpg.Record]:
    """The latest windows, newest first, with their booked batches; only those waiting for
    another service when ``unfinished``, and only those closed before ``closed_before``."""
    return await conn.fetch(
        f"""SELECT w.window_id, w.status, w.session, w.closed_at, w.batches, w.abandoned,
                   CASE WHEN w.booking_tracked THEN b.booked END AS booked
            FROM windows w
            CROSS JOIN LATERAL (SELECT count(*)::int AS booked FROM booked_batches bb
                                WHERE bb.window_id = w.window_id) b
            WHERE (NOT $1 OR {_UNFINISHED}) AND ($3::timestamptz IS NULL OR w.closed_at < $3)
            ORDER BY w.closed_at DESC, w.window_id LIMIT $2""", unfinished, limit, closed_before)


async def rejected_of(conn: asyncpg.Connection, window_id: UUID) -> list[asyncpg.Record]:
    """Per account: the intents the window rejected and why."""
    return await conn.fetch(
        """SELECT account_id, jsonb_object_agg(intent_id, reason) AS reasons FROM window_intents
           WHERE window_id = $1 AND status = 'rejected' GROUP BY account_id ORDER BY account_id""", window_id)


def _order(r: asyncpg.Record) -> NetOrder:
    low, high = domain.price_limits(r["last_price"]) if r["limited"] else (None, None)
    return NetOrder(symbol=r["symbol"], side=r["side"], notional=r["notional"], shares=r["shares"], min_price=low,
                    max_price=high)


async def insert_net_orders(conn: asyncpg.Connection, window_id: UUID,
                            last_prices: dict[str, Decimal] | None = None) -> list[NetOrder]:
    """Net the window's funded intents per security into its orders, in one statement
    (services/window/domain.py ``net_orders`` is the reference), each with the last price
    its intents were funded at: ``last_prices`` where given, else the window's price now."""
    last_prices = last_prices or {}
    rows = await conn.fetch(
        """INSERT INTO orders (window_id, symbol, side, notional, shares, last_price, limited)
           SELECT $1, n.symbol, CASE WHEN net >= 0 THEN 'buy' ELSE 'sell' END, abs(net), shares,
                  coalesce(k.price, p.price), limited AND coalesce(k.price, p.price) IS NOT NULL
           FROM (SELECT symbol,
                        coalesce(sum(CASE side WHEN 'buy' THEN funded_amount ELSE -funded_amount END), 0) AS net,
                        coalesce(sum(CASE side WHEN 'buy' THEN funded_quantity ELSE -funded_quantity END), 0) AS shares,
                        bool_or(side = 'sell' OR funded_quantity IS NOT NULL) AS limited
                 FROM window_intents WHERE window_id = $1 AND status = 'frozen' GROUP BY symbol) n
           LEFT JOIN unnest($2::text[], $3::numeric[]) AS k(symbol, price) USING (symbol)
           LEFT JOIN prices p USING (symbol)
           ORDER BY n.symbol
           RETURNING symbol, side, notional, shares, last_price, limited""",
        window_id, list(last_prices), list(last_prices.values()))
    return sorted((_order(r) for r in rows), key=lambda o: o.symbol)


async def net_again(conn: asyncpg.Connection, window_id: UUID) -> list[NetOrder]:
    """Replace the window's orders (not sent yet) by the net of its funded intents now, at
    the last prices they were funded at."""
    old = await conn.fetch("DELETE FROM orders WHERE window_id = $1 RETURNING symbol, last_price", window_id)
    return await insert_net_orders(conn, window_id, {r["symbol"]: r["last_price"] for r in old
                                                     if r["last_price"] is not None})


async def orders_of(conn: asyncpg.Connection, window_id: UUID) -> list[NetOrder]:
    rows = await conn.fetch("""SELECT symbol, side, notional, shares, last_price, limited FROM orders
                               WHERE window_id = $1 ORDER BY symbol""", window_id)
    return [_order(r) for r in rows]


# Every frozen intent's fill at its security's executed price (services/window/domain.py
# ``allocate`` is the reference): a dollar buy gets floor(amount / p) shares to 1/100,000, a
# dollar sell delivers the ceiling, limited with the account's other sells of the security
# to the shares it held when frozen (then it receives their value rounded down to the cent); a share
# buy pays its value rounded up to the cent, a share sell receives it rounded down. Exact,
# with integer ``div``. Used to allocate and to replay.
_ALLOCATION = """
    o AS (SELECT symbol, coalesce(executed_side, side) AS side, executed_quantity AS q, executed_price AS p,
                 executed_amount AS a
          FROM orders WHERE window_id = $1 AND executed_price IS NOT NULL),
    f AS (SELECT i.intent_id, i.account_id, i.symbol, i.side, i.funded_amount AS amount,
                 i.funded_quantity AS fq, i.held, i.created_at, o.p AS price,
                 div(i.funded_amount * 100000, o.p) AS down, i.funded_amount * 100000 AS scaled
          FROM window_intents i JOIN o USING (symbol) WHERE i.window_id = $1 AND i.status IN {statuses}),
    r AS (SELECT f.*,
                 CASE WHEN fq IS NOT NULL THEN fq
                      ELSE ((down + CASE WHEN side = 'sell' AND down * price <> scaled THEN 1 ELSE 0 END) / 100000
                           )::numeric(20, 5) END AS want
          FROM f),
    l AS (SELECT r.*,
                 greatest(held - coalesce(sum(fq) FILTER (WHERE side = 'sell')
                                              OVER (PARTITION BY account_id, symbol), 0)
                          - coalesce(sum(want) FILTER (WHERE side = 'sell' AND fq IS NULL)
                                         OVER (PARTITION BY account_id, symbol ORDER BY created_at, intent_id
                                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0), 0) AS left_
          FROM r),
    allocation AS (SELECT intent_id, account_id, symbol, side, price,
                          (CASE WHEN side = 'sell' AND fq IS NULL AND held IS NOT NULL AND want > left_ THEN left_
                                ELSE want END)::numeric(20, 5) AS quantity,
                          (CASE WHEN fq IS NOT NULL AND side = 'buy' THEN ceil(fq * price * 100) / 100
                                WHEN fq IS NOT NULL THEN floor(fq * price * 100) / 100
                                WHEN side = 'sell' AND held IS NOT NULL AND want > left_
                                    THEN floor(left_ * price * 100) / 100
                                ELSE amount END)::numeric(16, 2) AS amount
                   FROM l)"""


async def allocate(conn: asyncpg.Connection, window_id: UUID) -> None:
    """Allocate the window's executions to its frozen intents and book the firm's residue per
    security, in one statement."""
    await conn.execute(
        f"""WITH {_ALLOCATION.format(statuses="('frozen')")},
            -- in key order: a million random keys inserted in order touch the key's index
            -- page by page instead of at random (measured: 2.4 s less for a million rows)
            ins AS (INSERT INTO fills (intent_id, window_id, account_id, symbol, side, quantity, amount, price)
                    SELECT intent_id, $1, account_id, symbol, side, quantity, amount, price FROM allocation
                    ORDER BY intent_id
                    RETURNING symbol, side, quantity, amount),
            per AS (SELECT symbol, sum(CASE side WHEN 'buy' THEN quantity ELSE -quantity END) AS q,
                           sum(CASE side WHEN 'buy' THEN amount ELSE -amount END) AS a
                    FROM ins GROUP BY symbol)
            INSERT INTO residues (window_id, symbol, quantity, amount)
            SELECT $1, o.symbol, CASE o.side WHEN 'buy' THEN o.q ELSE -o.q END - coalesce(per.q, 0),
                   coalesce(per.a, 0) - CASE o.side WHEN 'buy' THEN o.a ELSE -o.a END
            FROM o LEFT JOIN per USING (symbol)""",
        window_id)


def _fill(r: asyncpg.Record) -> Fill:
    # Rows come from our own table with its types and checks: no re-validation.
    return Fill.model_construct(intent_id=r["intent_id"], account_id=r["account_id"], symbol=r["symbol"],
                                side=Side(r["side"]), quantity=r["quantity"], amount=r["amount"], price=r["price"])


async def replay_allocation(conn: asyncpg.Connection, window_id: UUID) -> list[Fill]:
    """Re-run the allocation of an allocated window from its stored intents and executions
    (writes nothing): the fills it computes, by intent id."""
    rows = await conn.fetch(
        "WITH " + _ALLOCATION.format(statuses="('frozen', 'filled')") + " SELECT * FROM allocation ORDER BY intent_id",
        window_id)
    return [_fill(r) for r in rows]


async def fills_json_by_batch(conn: asyncpg.Connection, window_id: UUID, accounts_per_batch: int) -> list[str]:
    """The window's stored fills as one JSON array of fill rows per batch (``FillsBatch.fills``:
    ``FILL_ROW`` order, decimals as strings), every account's in one batch,
    ``accounts_per_batch`` accounts per batch in account order. Built by PostgreSQL: a
    million fills never become Python objects."""
    rows = await conn.fetch(
        """SELECT batch, json_agg(json_build_array(intent_id, account_id, symbol, side, quantity::text,
                                                   amount::text, price::text)
                                  ORDER BY account_id, intent_id)::text AS fills
           FROM (SELECT (dense_rank() OVER (ORDER BY account_id) - 1) / $2 AS batch, *
                 FROM fills WHERE window_id = $1) f
           GROUP BY batch ORDER BY batch""",
        window_id, accounts_per_batch)
    return [r["fills"] for r in rows]


async def fills_of(conn: asyncpg.Connection, window_id: UUID) -> list[Fill]:
    rows = await conn.fetch("SELECT * FROM fills WHERE window_id = $1 ORDER BY intent_id", window_id)
    return [_fill(r) for r in rows]


async def executions_of(conn: asyncpg.Connection, window_id: UUID) -> list[Execution]:
    rows = await conn.fetch(
        """SELECT symbol, coalesce(executed_side, side) AS side, executed_quantity, executed_price, executed_amount
           FROM orders
           WHERE window_id = $1 AND executed_price IS NOT NULL ORDER BY symbol""", window_id)
    return [Execution(symbol=r["symbol"], side=r["side"], quantity=r["executed_quantity"],
                      price=r["executed_price"], amount=r["executed_amount"]) for r in rows]


async def residues_of(conn: asyncpg.Connection, window_id: UUID) -> list[Residue]:
    rows = await conn.fetch("SELECT symbol, quantity, amount FROM residues WHERE window_id = $1 ORDER BY symbol",
                            window_id)
    return [Residue(symbol=r["symbol"], quantity=r["quantity"], amount=r["amount"]) for r in rows]


async def summarise(conn: asyncpg.Connection, window_id: UUID) -> dict[str, Any]:
    """The window's summary from its rows, in one statement: intents, accounts, rejected,
    carried over, and per security the gross funded buys and sells, the net, the execution
    and the residue (decimals as strings)."""
    text = await conn.fetchval(
        """WITH per AS (
               SELECT i.symbol, count(*) AS intents,
                      coalesce(sum(i.funded_amount) FILTER (WHERE i.side = 'buy'), 0.00) AS gross_buy,
                      coalesce(sum(i.funded_amount) FILTER (WHERE i.side = 'sell'), 0.00) AS gross_sell,
                      coalesce(sum(CASE i.side WHEN 'buy' THEN i.funded_quantity ELSE -i.funded_quantity END), 0)
                          AS net_shares
               FROM window_intents i WHERE i.window_id = $1 AND i.status IN ('frozen', 'filled') GROUP BY i.symbol)
           SELECT jsonb_build_object(
               'intents', (SELECT count(*) FROM window_intents WHERE window_id = $1)
                          + (SELECT count(*) FROM carried_over WHERE window_id = $1),
               'accounts', (SELECT count(DISTINCT account_id) FROM window_intents WHERE window_id = $1),
               'rejected', (SELECT count(*) FROM window_intents WHERE window_id = $1 AND status = 'rejected'),
               'carried_over', (SELECT count(*) FROM carried_over WHERE window_id = $1),
               'halted', coalesce((SELECT jsonb_object_agg(symbol, halted) FROM orders
                                   WHERE window_id = $1 AND halted IS NOT NULL), '{}'::jsonb),
               'refused', coalesce((SELECT jsonb_object_agg(symbol, refused) FROM orders
                                    WHERE window_id = $1 AND refused IS NOT NULL), '{}'::jsonb),
               'abandoned', (SELECT abandoned FROM windows WHERE window_id = $1),
               'securities', coalesce((SELECT jsonb_object_agg(per.symbol, jsonb_build_object(
                   'intents', per.intents, 'gross_buy', per.gross_buy::text, 'gross_sell', per.gross_sell::text,
                   'net', (per.gross_buy - per.gross_sell)::text, 'net_shares', per.net_shares::text,
                   'side', coalesce(o.executed_side, o.side),
                   'price', o.executed_price::text, 'quantity', o.executed_quantity::text,
                   'amount', o.executed_amount::text,
                   'residue_quantity', r.quantity::text, 'residue_amount', r.amount::text))
                   FROM per JOIN orders o ON o.window_id = $1 AND o.symbol = per.symbol
                   LEFT JOIN residues r ON r.window_id = $1 AND r.symbol = per.symbol), '{}'::jsonb))::text""",
        window_id)
    return json.loads(text)


async def accounts_in(conn: asyncpg.Connection, window_id: UUID) -> int:
    return await conn.fetchval("SELECT count(DISTINCT account_id) FROM window_intents WHERE window_id = $1",
                               window_id)


async def window_of(conn: asyncpg.Connection, window_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT window_id, status, closed_at, summary FROM windows WHERE window_id = $1",
                               window_id)


async def cancel(conn: asyncpg.Connection, intent_ids: Sequence[UUID], batch_id: UUID | None, *,
                 started: domain.Run | None = None, both_windows_equity: Decimal = domain.BOTH_WINDOWS_EQUITY,
                 ) -> tuple[list[UUID], dict[str, str]]:
    """Cancel the pending intents among ``intent_ids`` and the batch's; returns the cancelled
    ids and, for the others, why not (unknown, no longer pending, or its window has started).
    ``started``: a scheduled window that has started and not run yet (the schedule runs it at
    its next check): the intents it will take, by ``freeze_and_fund``'s rule, stay."""
    eligible = _eligible(started="$3", session="$4", equity="$5", other="$6",
                         among=" AND intent_id IN (SELECT intent_id FROM wanted)")
    rows = await conn.fetch(
        f"""WITH wanted AS (SELECT unnest($1::uuid[]) AS intent_id
                            UNION SELECT intent_id FROM intents WHERE batch_id = $2),
                 {eligible},
                 started AS (SELECT i.intent_id FROM submitted_intents i JOIN eligible e USING (account_id)
                             WHERE i.intent_id IN (SELECT intent_id FROM wanted) AND i.status = 'pending'
                               AND i.created_at <= e.cutoff),
                 done AS (UPDATE submitted_intents SET status = 'cancelled', reason = 'cancelled before its window'
                          WHERE intent_id IN (SELECT intent_id FROM wanted) AND status = 'pending'
                            AND intent_id NOT IN (SELECT intent_id FROM started)
                          RETURNING intent_id)
            SELECT w.intent_id, d.intent_id IS NOT NULL AS cancelled, s.intent_id IS NOT NULL AS started, i.status,
                   i.window_id
            FROM wanted w LEFT JOIN done d USING (intent_id) LEFT JOIN started s USING (intent_id)
                 LEFT JOIN intents i USING (intent_id)
            ORDER BY w.intent_id""",
        list(intent_ids), batch_id, started and started.slot.starts_at, started and started.slot.session,
        both_windows_equity, started and started.other_at)
    cancelled = [r["intent_id"] for r in rows if r["cancelled"]]
    refused = {}
    for r in rows:
        if r["cancelled"]:
            continue
        if r["started"]:
            refused[str(r["intent_id"])] = started.refusal
        elif r["status"] is None:
            refused[str(r["intent_id"])] = "unknown intent"
        elif r["status"] == "cancelled":
            refused[str(r["intent_id"])] = "already cancelled"
        else:
            refused[str(r["intent_id"])] = f"its window {r['window_id']} has started (intent {r['status']})"
    return cancelled, refused


async def carry_over(conn: asyncpg.Connection, window_id: UUID, halted: dict[str, str], *,
                     mark_orders: bool = True) -> list[asyncpg.Record]:
    """Send the window's intents in halted securities back to pending for the next window,
    with the reason, in one statement; returns per account the symbols, intents and reason.
    The orders of those securities are marked halted with it, unless not ``mark_orders``."""
    symbols = sorted(halted)
    return await conn.fetch(
        """WITH h AS (SELECT * FROM unnest($2::text[], $3::text[]) AS t(symbol, reason)),
                halted AS (UPDATE orders o SET halted = h.reason FROM h
                           WHERE $4 AND o.window_id = $1 AND o.symbol = h.symbol RETURNING o.symbol),
                moved AS (DELETE FROM window_intents i USING h
                          WHERE i.window_id = $1 AND i.status = 'frozen' AND i.symbol = h.symbol
                          RETURNING i.*, h.reason AS why),
                back AS (INSERT INTO submitted_intents (intent_id, batch_id, account_id, symbol, side, amount,
                                                        quantity, source, status, reason, created_at)
                         SELECT intent_id, batch_id, account_id, symbol, side, amount, quantity, source, 'pending',
                                why, created_at FROM moved),
                kept AS (INSERT INTO carried_over (window_id, intent_id, reason)
                         SELECT $1, intent_id, why FROM moved)
           SELECT account_id, array_agg(DISTINCT symbol ORDER BY symbol) AS symbols,
                  array_agg(intent_id ORDER BY intent_id) AS intents,
                  string_agg(DISTINCT why, '; ') AS reason
           FROM moved GROUP BY account_id ORDER BY account_id""",
        window_id, symbols, [halted[x] for x in symbols], mark_orders)


async def frozen_symbols(conn: asyncpg.Connection, window_id: UUID) -> list[str]:
    return [r["symbol"] for r in await conn.fetch(
        "SELECT DISTINCT symbol FROM window_intents WHERE window_id = $1 AND status = 'frozen' ORDER BY symbol",
        window_id)]


async def mark_abandoned(conn: asyncpg.Connection, window_id: UUID, reason: str, now: datetime) -> None:
    """The window is abandoned (its intents already carried over): its reservations go, and
    it keeps the operator's reason and its summary."""
    await conn.execute("DELETE FROM reservations WHERE window_id = $1", window_id)
    await conn.execute(
        "UPDATE windows SET status = 'abandoned', abandoned = $2, abandoned_at = $3 WHERE window_id = $1",
        window_id, reason, now)
    await conn.execute("UPDATE windows SET summary = $2::jsonb WHERE window_id = $1",
                       window_id, json.dumps(await summarise(conn, window_id)))


async def reject_refused(conn: asyncpg.Connection, window_id: UUID, refused: dict[str, str]) -> list[asyncpg.Record]:
    """Reject the window's intents in securities the venue refused, with its reason, in one
    statement; returns per account the intents and reasons."""
    symbols = sorted(refused)
    return await conn.fetch(
        """WITH r AS (SELECT * FROM unnest($2::text[], $3::text[]) AS t(symbol, reason)),
                marked AS (UPDATE orders o SET refused = r.reason FROM r
                           WHERE o.window_id = $1 AND o.symbol = r.symbol RETURNING o.symbol),
                dropped AS (UPDATE window_intents i SET status = 'rejected', reason = r.reason
                            FROM r WHERE i.window_id = $1 AND i.status = 'frozen' AND i.symbol = r.symbol
                            RETURNING i.intent_id, i.account_id, r.reason)
           SELECT account_id, jsonb_object_agg(intent_id, reason) AS reasons
           FROM dropped GROUP BY account_id ORDER BY account_id""",
        window_id, symbols, [refused[x] for x in symbols])


async def set_cash(conn: asyncpg.Connection, account_id: str, cash: Decimal, version: int) -> None:
    """Keep the newest cash the ledger reported for the account (older versions are ignored)."""
    await conn.execute(
        """INSERT INTO cash (account_id, cash, version) VALUES ($1, $2, $3)
           ON CONFLICT (account_id) DO UPDATE SET cash = EXCLUDED.cash, version = EXCLUDED.version
           WHERE cash.version < EXCLUDED.version""", account_id, cash, version)


async def set_loan(conn: asyncpg.Connection, account_id: str, loan: Decimal, version: int) -> None:
    """Keep the newest loan the ledger reported for the account (older versions are ignored)."""
    await conn.execute(
        """INSERT INTO loans (account_id, loan, version) VALUES ($1, $2, $3)
           ON CONFLICT (account_id) DO UPDATE SET loan = EXCLUDED.loan, version = EXCLUDED.version
           WHERE loans.version < EXCLUDED.version""", account_id, loan, version)


async def insert_window(conn: asyncpg.Connection, window_id: UUID, closed_at: datetime,
                        session: str | None = None) -> None:
    await conn.execute("INSERT INTO windows (window_id, status, closed_at, session) VALUES ($1, 'executing', $2, $3)",
                       window_id, closed_at, session)


async def lock_window(conn: asyncpg.Connection, window_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT window_id, status FROM windows WHERE window_id = $1 FOR UPDATE", window_id)


async def intents_of(conn: asyncpg.Connection, window_id: UUID) -> list[Intent]:
    rows = await conn.fetch(
        f"SELECT {_INTENT_COLUMNS} FROM window_intents WHERE window_id = $1 ORDER BY created_at, intent_id",
        window_id)
    return [_intent(r) for r in rows]


async def record_executions(conn: asyncpg.Connection, window_id: UUID, executions: Sequence[Execution]) -> None:
    await conn.execute(
        """UPDATE orders SET executed_quantity = t.q, executed_price = t.p, executed_amount = t.a,
                              executed_side = t.d
           FROM unnest($2::text[], $3::numeric[], $4::numeric[], $5::numeric[], $6::text[]) AS t(s, q, p, a, d)
           WHERE orders.window_id = $1 AND orders.symbol = t.s""",
        window_id, [e.symbol for e in executions], [e.quantity for e in executions], [e.price for e in executions],
        [e.amount for e in executions], [e.side.value for e in executions],
    )


async def mark_allocated(conn: asyncpg.Connection, window_id: UUID, executed_at: datetime | None,
                         allocated_at: datetime, batches: int, batch_accounts: int | None = None) -> dict[str, Any]:
    """Mark the window allocated, with its summary (returned), its number of fills batches
    and how many accounts each holds (``fills_json_by_batch``). Its frozen intents are filled
    by that (each has its row in ``fills``): rewriting a million intents' status would cost
    more than the allocation itself."""
    summary = await summarise(conn, window_id)
    await conn.execute(
        """UPDATE windows SET status = 'allocated', executed_at = $2, allocated_at = $3, summary = $4::jsonb,
                              batches = $5, batch_accounts = $6
           WHERE window_id = $1""",
        window_id, executed_at, allocated_at, json.dumps(summary), batches, batch_accounts,
    )
    return summary
