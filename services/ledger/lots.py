"""Tax lots, realised gains, regulatory and platform fees, cash interest, dividends. Pure; no I/O.

Lot selection is the *tax-minimising* method (M1's "tax minimization"): a sale closes its
lots in this order of categories,

1. short-term losses, largest loss per share first
2. long-term losses, largest loss per share first
3. short-term lots at zero gain
4. long-term lots at zero gain
5. long-term gains, smallest gain per share first
6. short-term gains, smallest gain per share first

ties broken oldest lot first (acquired date, then lot id). The gain per share of a lot is
the sale's price less the lot's cost per share. A lot is long-term when sold more than one
year after it was acquired (the day after the acquisition's anniversary or later).
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal

from shared.money import CENT, cents, cents_down, cents_up

ZERO = Decimal("0")
SHARE_ZERO = Decimal("0.00000")
WASH_SALE_DAYS = 30
METHOD = "tax-minimising (short-term losses, long-term losses, zero, long-term gains, short-term gains)"


@dataclass(frozen=True)
class Lot:
    """An open tax lot: what is left of one buy (``quantity`` shares that cost ``cost``)."""

    lot_id: int
    acquired: date
    quantity: Decimal
    cost: Decimal


@dataclass(frozen=True)
class Closure:
    """A sale's closing of ``quantity`` shares of one lot (``lot_id`` None: shares without a
    lot, held before lots were kept; their cost is unknown and booked as zero)."""

    lot_id: int | None
    acquired: date | None
    quantity: Decimal
    proceeds: Decimal
    cost: Decimal
    term: str  # "short" | "long"

    @property
    def gain(self) -> Decimal:
        return self.proceeds - self.cost

    @property
    def basis_known(self) -> bool:
        return self.lot_id is not None


def anniversary(acquired: date) -> date:
    """The same day one year later (28 February for a lot bought on 29 February)."""
    year = acquired.year + 1
    day = min(acquired.day, calendar.monthrange(year, acquired.month)[1])
    return date(year, acquired.month, day)


def is_long_term(acquired: date, sold: date) -> bool:
    """Held more than one year: sold after the anniversary of the acquisition."""
    return sold > anniversary(acquired)


def term_of(acquired: date, sold: date) -> str:
    return "long" if is_long_term(acquired, sold) else "short"


def selection_key(lot: Lot, price: Decimal, sold: date) -> tuple:
    """Sort key of a lot for a sale at ``price`` on ``sold`` (see the module's docstring)."""
    per_share = price - lot.cost / lot.quantity
    long = is_long_term(lot.acquired, sold)
    if per_share < 0:
        rank, order = (1 if long else 0), per_share  # most negative (largest loss) first
    elif per_share == 0:
        rank, order = (3 if long else 2), ZERO
    else:
        rank, order = (4 if long else 5), per_share  # smallest gain first
    return rank, order, lot.acquired, lot.lot_id


def select_lots(lots: Iterable[Lot], price: Decimal, sold: date) -> list[Lot]:
    """The open lots in the order a sale at ``price`` on ``sold`` closes them."""
    return sorted((lot for lot in lots if lot.quantity > 0), key=lambda lot: selection_key(lot, price, sold))


def close_lots(lots: Sequence[Lot], quantity: Decimal, proceeds: Decimal, price: Decimal, sold: date
               ) -> tuple[list[Closure], list[Lot]]:
    """Close ``quantity`` shares sold for ``proceeds`` (cash, to the cent) against ``lots``.

    Returns the closures and the lots whose remaining quantity changed (with what remains).
    A lot closed in part gives up its cost pro rata, to the cent (half-even); a lot closed
    in full gives up all the cost it has left, so a lot's cost is used exactly once. The
    proceeds are shared over the closures pro rata by quantity, to the cent, the last
    closure taking the remainder so they sum to the sale's proceeds exactly.
    """
    if quantity <= 0:
        return [], []
    left = quantity
    parts: list[tuple[Lot | None, Decimal, Decimal]] = []  # (lot, quantity, cost)
    changed: list[Lot] = []
    for lot in select_lots(lots, price, sold):
        if left <= 0:
            break
        take = min(lot.quantity, left)
        cost = lot.cost if take == lot.quantity else cents(lot.cost * take / lot.quantity)
        parts.append((lot, take, cost))
        changed.append(replace(lot, quantity=lot.quantity - take, cost=lot.cost - cost))
        left -= take
    if left > 0:
        parts.append((None, left, ZERO.quantize(CENT)))
    closures: list[Closure] = []
    shared = ZERO
    for i, (lot, take, cost) in enumerate(parts):
        share = proceeds - shared if i == len(parts) - 1 else cents(proceeds * take / quantity)
        shared += share
        closures.append(Closure(
            lot_id=lot.lot_id if lot else None, acquired=lot.acquired if lot else None, quantity=take,
            proceeds=share, cost=cost, term=term_of(lot.acquired, sold) if lot else "short"))
    return closures, changed


@dataclass(frozen=True)
class Sale:
    """One sell fill to book against lots."""

    sale_id: str
    account_id: str
    symbol: str
    quantity: Decimal
    proceeds: Decimal
    price: Decimal


def close_sales(open_lots: Mapping[tuple[str, str], Sequence[Lot]], sales: Sequence[Sale], sold: date
                ) -> tuple[list[tuple[Sale, Closure]], dict[int, Lot]]:
    """Close every sale of a batch against the open lots of its (account, symbol), in the
    order given (each sale sees what earlier ones left). Returns every (sale, closure) and
    the final state of every lot that changed, by lot id."""
    state: dict[tuple[str, str], list[Lot]] = {k: list(v) for k, v in open_lots.items()}
    changed: dict[int, Lot] = {}
    out: list[tuple[Sale, Closure]] = []
    for sale in sales:
        key = (sale.account_id, sale.symbol)
        closures, touched = close_lots(state.get(key, []), sale.quantity, sale.proceeds, sale.price, sold)
        by_id = {lot.lot_id: lot for lot in touched}
        state[key] = [by_id.get(lot.lot_id, lot) for lot in state.get(key, [])]
        changed.update(by_id)
        out += [(sale, c) for c in closures]
    return out, changed


def is_wash_sale(gain: Decimal, sold: date, other_buys: Iterable[date]) -> bool:
    """A loss sale with a purchase of the same security (other than the shares sold) within
    30 days before or after it."""
    return gain < 0 and any(abs((bought - sold).days) <= WASH_SALE_DAYS for bought in other_buys)


# ---------------------------------------------------------------- regulatory fees


@dataclass(frozen=True)
class RegulatoryRates:
    sec_per_million: Decimal
    taf_per_share: Decimal
    taf_max: Decimal


def sec_fee(principal: Decimal, rates: RegulatoryRates) -> Decimal:
    """SEC fee on a sale: the rate per $1,000,000 of principal, rounded up to the cent."""
    return cents_up(principal * rates.sec_per_million / Decimal(1_000_000))


def finra_taf(quantity: Decimal, rates: RegulatoryRates) -> Decimal:
    """FINRA trading activity fee on a sale: per share sold, rounded up to the cent, at most
    the cap per trade."""
    return min(cents_up(quantity * rates.taf_per_share), rates.taf_max)


def window_of(sale_id: str) -> str:
    """The window of a sale id ``<window>:<intent>`` (or of a bare window id)."""
    return sale_id.split(":", 1)[0]


def regulatory_fees(sales: Iterable[Sale], rates: RegulatoryRates) -> dict[str, tuple[Decimal, Decimal]]:
    """Per account, its (SEC fee, FINRA TAF) for a day's sales. A trade is one account's
    sale of one security in one window (several sell fills of it in that window are one
    trade; sales of it in two windows are two): each fee is computed and rounded up to the
    cent per trade, the TAF capped per trade, then summed per account."""
    trades: dict[tuple[str, str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for s in sales:
        trade = trades[(s.account_id, s.symbol, window_of(s.sale_id))]
        trade[0] += s.proceeds
        trade[1] += s.quantity
    fees: dict[str, tuple[Decimal, Decimal]] = {}
    for (account_id, _, _), (principal, quantity) in sorted(trades.items()):
        sec, taf = fees.get(account_id, (ZERO, ZERO))
        fees[account_id] = (sec + sec_fee(principal, rates), taf + finra_taf(quantity, rates))
    return fees


# ---------------------------------------------------------------- platform fee, interest, dividends


def platform_fee_due(day_values: Iterable[Decimal], fee: Decimal, waiver: Decimal) -> Decimal:
    """The month's platform fee of one account from its recorded day-end values: nothing
    when the value reached ``waiver`` on at least one day, nothing for an account that held
    nothing all month (no value above zero), else ``fee``."""
    values = list(day_values)
    if not values or max(values) >= waiver or max(values) <= 0:
        return ZERO.quantize(CENT)
    return fee


INTEREST_PLACES = Decimal("0.0000000001")


def daily_interest(cash: Decimal, annual_rate: Decimal, day: date) -> Decimal:
    """One day's interest on uninvested cash (actual/365; 366 in a leap year), kept to
    1e-10 of a dollar; the month's sum is paid rounded down to the cent."""
    if cash <= 0:
        return ZERO
    days = 366 if calendar.isleap(day.year) else 365
    return (cash * annual_rate / days).quantize(INTEREST_PLACES)


def monthly_interest(accrued: Decimal) -> Decimal:
    return cents_down(accrued)


def days_owed(started: date, today: date, done: Iterable[date]) -> list[date]:
    """The finished days since the schedule first started (``started``, included) that have
    not run, oldest first; ``today`` is not finished."""
    ran = set(done)
    return [d for d in (started + timedelta(days=i) for i in range((today - started).days)) if d not in ran]


def month_end(day: date) -> bool:
    return (day + timedelta(days=1)).month != day.month


def dividend_credits(holdings: Mapping[str, Decimal], per_share: Decimal) -> tuple[dict[str, Decimal], Decimal, Decimal]:
    """Each holder's dividend (shares × amount per share, rounded down to the cent), the
    gross the firm receives for all its customers' shares (the sum of the exact amounts,
    rounded down to the cent) and the residue (gross less the credits) kept by the firm."""
    credits = {a: cents_down(q * per_share) for a, q in holdings.items() if q > 0}
    gross = cents_down(sum((q * per_share for q in holdings.values() if q > 0), ZERO))
    credits = {a: c for a, c in credits.items() if c > 0}
    return credits, gross, gross - sum(credits.values(), ZERO)
