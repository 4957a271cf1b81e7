"""Window rules: which intents a window accepts, how it nets them per security, and how it
allocates the venue's executions back to them exactly. Pure; no I/O.

Allocation rule (every participant of a window gets the execution's one price ``p``):
- a buy of ``a`` dollars receives ``shares_down(a / p)`` shares and pays exactly ``a``;
- a sell of ``a`` dollars delivers ``shares_up(a / p)`` shares and receives exactly ``a``;
- the firm's residue per security takes what is left so that the window's ledger entry
  balances (signs as in the ledger: a street buy is ``+amount`` cash to the street,
  ``-quantity`` shares from it):

      residue.amount   = sum(buy amounts) - sum(sell amounts) - signed street amount
      residue.quantity = signed street quantity - sum(buy quantities) + sum(sell quantities)

  where "signed" is ``+`` for a venue buy and ``-`` for a venue sell.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.contracts import Execution, Fill, Intent, IntentSource, IntentsSubmitted, NetOrder, Residue, Side
from shared.money import shares_down, shares_up

ZERO = Decimal("0")


class Refusal(Exception):
    """Intents or executions the window will not take, with the reason."""


def check_batch(batch: IntentsSubmitted) -> None:
    """A batch holds dollar intents of the batch's own account, each id once."""
    problems = []
    if any(i.quantity is not None for i in batch.intents):
        problems.append("share-quantity intents are not supported yet")
    if others := sorted({i.account_id for i in batch.intents if i.account_id != batch.account_id}):
        problems.append(f"intents for other accounts ({', '.join(others)}) in a batch of {batch.account_id}")
    if repeated := sorted(str(k) for k, n in Counter(i.intent_id for i in batch.intents).items() if n > 1):
        problems.append(f"intent ids repeated in the batch: {', '.join(repeated)}")
    if problems:
        raise Refusal("; ".join(problems))


# Funding order of buys within an account: margin liquidations, then customer orders, then
# automated trades (rebalances and auto-invest).
PRIORITY = {IntentSource.LIQUIDATION: 0, IntentSource.ORDER: 1, IntentSource.REBALANCE: 2,
            IntentSource.AUTO_INVEST: 2}
MINIMUM_BUY = Decimal("1.00")
UNDER_MINIMUM = "insufficient cash: the buy is under $1 after scaling to the account's cash"


@dataclass(frozen=True)
class Funding:
    """What a window funds of each intent (``funded``: intent id -> amount) and the buys it
    drops (``rejected``: intent id -> reason)."""

    funded: dict[UUID, Decimal]
    rejected: dict[UUID, str]

    def apply(self, intents: Iterable[Intent]) -> list[Intent]:
        """The funded intents, each with its funded amount."""
        return [i.model_copy(update={"amount": self.funded[i.intent_id]}) for i in intents
                if i.intent_id in self.funded]


def fund(intents: Sequence[Intent], cash: Mapping[str, Decimal]) -> Funding:
    """Sells are funded in full. An account's buys are funded by its cash plus the proceeds
    of its sells in the window, tier by tier in ``PRIORITY`` order: a tier the money covers
    is funded in full; the first it does not cover is scaled pro rata to what is left
    (``amount * left / tier total``, rounded down to the cent, exactly); later tiers get
    nothing. A buy funded under $1 is dropped with ``UNDER_MINIMUM``; the cash it would
    have used stays in the account."""
    funded: dict[UUID, Decimal] = {}
    rejected: dict[UUID, str] = {}
    by_account: dict[str, list[Intent]] = defaultdict(list)
    for intent in intents:
        by_account[intent.account_id].append(intent)
    for account, group in by_account.items():
        available = cash.get(account, ZERO) + sum((i.amount for i in group if i.side is Side.SELL), ZERO)
        tiers: dict[int, list[Intent]] = defaultdict(list)
        for intent in group:
            if intent.side is Side.SELL:
                funded[intent.intent_id] = intent.amount
            else:
                tiers[PRIORITY[intent.source]].append(intent)
        before = ZERO
        for _, tier in sorted(tiers.items()):
            demand = sum((i.amount for i in tier), ZERO)
            left = available - before
            for intent in tier:
                if left >= demand:
                    amount = intent.amount
                elif left <= 0:
                    amount = ZERO
                else:  # exact: integer division of cents, rounded toward zero
                    amount = (intent.amount * left * 100 // demand) / 100
                if amount >= MINIMUM_BUY:
                    funded[intent.intent_id] = amount.quantize(Decimal("0.01"))
                else:
                    rejected[intent.intent_id] = UNDER_MINIMUM
            before += demand
    return Funding(funded, rejected)


def check_executions(orders: Sequence[NetOrder], executions: Sequence[Execution],
                     halted: Mapping[str, str] | None = None) -> None:
    """The venue's answer must cover exactly the window's orders: per ordered security one
    execution on the order's side, or a halt."""
    ordered = {o.symbol: o for o in orders}
    halted = halted or {}
    problems = [f"{s} executed {n} times" for s, n in Counter(e.symbol for e in executions).items() if n > 1]
    executed = {e.symbol: e for e in executions}
    problems += [f"{s} both executed and halted" for s in executed if s in halted]
    problems += [f"halt for {s}, which has no intents in this window" for s in halted if s not in ordered]
    problems += [f"no execution for {s}" for s in ordered if s not in executed and s not in halted]
    problems += [f"execution for {s}, which has no intents in this window" for s in executed if s not in ordered]
    problems += [f"{s} executed as a {e.side} for a net {ordered[s].side} order" for s, e in executed.items()
                 if s in ordered and e.side != ordered[s].side]
    if problems:
        raise Refusal("; ".join(problems))


def _signed(side: Side, value: Decimal) -> Decimal:
    return value if side is Side.BUY else -value


def _by_symbol(intents: Iterable[Intent]) -> dict[str, list[Intent]]:
    groups: dict[str, list[Intent]] = defaultdict(list)
    for intent in intents:
        groups[intent.symbol].append(intent)
    return dict(sorted(groups.items()))


def net_orders(intents: Iterable[Intent]) -> list[NetOrder]:
    """One order per security that has intents, sorted by symbol: net notional = buys - sells,
    a buy when that is positive or zero, a sell otherwise. A zero net still goes to the venue
    so that the window learns the price at which its crossed intents change hands."""
    orders = []
    for symbol, group in _by_symbol(intents).items():
        net = sum((_signed(i.side, i.amount) for i in group), ZERO)
        orders.append(NetOrder(symbol=symbol, side=Side.BUY if net >= 0 else Side.SELL, notional=abs(net)))
    return orders


@dataclass(frozen=True)
class Allocation:
    fills: list[Fill]
    residues: list[Residue]


def fill_of(intent: Intent, price: Decimal) -> Fill:
    """One dollar intent at the window price: a buy gets the shares its amount buys (rounded
    down), a sell delivers the shares its amount is worth (rounded up); both settle at
    exactly the intent's amount."""
    exact = intent.amount / price
    quantity = shares_down(exact) if intent.side is Side.BUY else shares_up(exact)
    return Fill(intent_id=intent.intent_id, account_id=intent.account_id, symbol=intent.symbol, side=intent.side,
                quantity=quantity, amount=intent.amount, price=price)


def residue_of(execution: Execution, fills: Sequence[Fill]) -> Residue:
    """What the firm keeps (positive) or supplies (negative) of one security so that street,
    customers and firm sum to zero in cash and in shares."""
    customers_cash = sum((_signed(f.side, f.amount) for f in fills), ZERO)
    customers_shares = sum((_signed(f.side, f.quantity) for f in fills), ZERO)
    return Residue(symbol=execution.symbol,
                   quantity=_signed(execution.side, execution.quantity) - customers_shares,
                   amount=customers_cash - _signed(execution.side, execution.amount))


def allocate(intents: Sequence[Intent], executions: Sequence[Execution]) -> Allocation:
    """Allocate a window's executions back to its frozen intents (one execution per security
    that has intents, on the side of the window's net order)."""
    groups = _by_symbol(intents)
    by_symbol = {e.symbol: e for e in executions}
    problems = [f"{s} executed {n} times" for s, n in Counter(e.symbol for e in executions).items() if n > 1]
    problems += [f"no execution for {s}" for s in groups if s not in by_symbol]
    problems += [f"execution for {s}, which has no intents in this window" for s in by_symbol if s not in groups]
    for order in net_orders(intents):
        execution = by_symbol.get(order.symbol)
        if execution is not None and execution.side != order.side:
            problems.append(f"{order.symbol} executed as a {execution.side} for a net {order.side} order")
    if problems:
        raise Refusal("; ".join(problems))
    fills: list[Fill] = []
    residues: list[Residue] = []
    for symbol, group in groups.items():
        execution = by_symbol[symbol]
        symbol_fills = [fill_of(intent, execution.price) for intent in group]
        fills += symbol_fills
        residues.append(residue_of(execution, symbol_fills))
    return Allocation(fills, residues)


def _text(value: Decimal) -> str:
    return format(value, "f")


def summary(intents: Sequence[Intent], executions: Sequence[Execution], residues: Sequence[Residue]) -> dict[str, Any]:
    """What an operator reads about an allocated window (JSON-ready: decimals as strings)."""
    by_symbol = {e.symbol: e for e in executions}
    residue_of_symbol = {r.symbol: r for r in residues}
    securities = {}
    for symbol, group in _by_symbol(intents).items():
        buys = sum((i.amount for i in group if i.side is Side.BUY), ZERO)
        sells = sum((i.amount for i in group if i.side is Side.SELL), ZERO)
        e, r = by_symbol[symbol], residue_of_symbol[symbol]
        securities[symbol] = {
            "intents": len(group), "gross_buy": _text(buys), "gross_sell": _text(sells), "net": _text(buys - sells),
            "side": e.side.value, "price": _text(e.price), "quantity": _text(e.quantity), "amount": _text(e.amount),
            "residue_quantity": _text(r.quantity), "residue_amount": _text(r.amount),
        }
    return {"intents": len(intents), "accounts": len({i.account_id for i in intents}), "securities": securities}


# ---------------------------------------------------------------- schedule

MORNING, AFTERNOON = "morning", "afternoon"
NEW_YORK = ZoneInfo("America/New_York")
MORNING_AT, AFTERNOON_AT = time(9, 30), time(15, 0)
# On an early-close day the afternoon window runs this long before the close (12:30 for 13:00).
EARLY_CLOSE_LEAD = timedelta(minutes=30)
# Equity from which a basic account trades in both windows.
BOTH_WINDOWS_EQUITY = Decimal("25000")


@dataclass(frozen=True, order=True)
class Slot:
    """One scheduled window: when it starts (aware, UTC) and which of the day's two it is."""

    starts_at: datetime
    session: str


@lru_cache(maxsize=8)
def _nyse(year: int) -> Any:
    import exchange_calendars  # slow to import; only the schedule needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return exchange_calendars.get_calendar("XNYS", start=f"{year - 1}-01-01", end=f"{year + 1}-12-31")


def slots_on(day: date) -> list[Slot]:
    """The day's windows on the NYSE calendar: none on a weekend or holiday; 09:30 and 15:00
    New York time, the afternoon one moved to 30 minutes before an early close."""
    calendar = _nyse(day.year)
    with warnings.catch_warnings():  # pandas deprecation notices from inside the library
        warnings.simplefilter("ignore")
        if not calendar.is_session(day.isoformat()):
            return []
        close = calendar.session_close(day.isoformat()).to_pydatetime()
    morning = datetime.combine(day, MORNING_AT, NEW_YORK)
    afternoon = min(datetime.combine(day, AFTERNOON_AT, NEW_YORK), close - EARLY_CLOSE_LEAD)
    return [Slot(morning.astimezone(UTC), MORNING), Slot(afternoon.astimezone(UTC), AFTERNOON)]


def latest_slot(now: datetime) -> Slot | None:
    """The most recent window that should have started at ``now`` (within the last 10 days)."""
    today = now.astimezone(NEW_YORK).date()
    for back in range(11):
        due = [s for s in slots_on(today - timedelta(days=back)) if s.starts_at <= now]
        if due:
            return due[-1]
    return None


def next_slot(now: datetime) -> Slot:
    """The first window starting after ``now``."""
    today = now.astimezone(NEW_YORK).date()
    for ahead in range(15):
        later = [s for s in slots_on(today + timedelta(days=ahead)) if s.starts_at > now]
        if later:
            return later[0]
    raise Refusal(f"no NYSE session within 15 days of {now.isoformat()}")


def trades_in(session: str, plan: str | None, chosen: str | None, equity: Decimal) -> bool:
    """Whether an account trades in a window of ``session``: plus accounts and accounts with
    at least $25,000 equity in both, others in the one they chose (morning by default)."""
    return plan == "plus" or equity >= BOTH_WINDOWS_EQUITY or (chosen or MORNING) == session
