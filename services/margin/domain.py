"""Margin rules (PRODUCT.md "Margin (borrow)"). Pure; no I/O.

- Equity = market value + cash - loan.
- Maintenance requirement = sum over holdings of value x rate, the rate being the security's
  own or the house rate (30%), never below the regulatory minimum (25%).
- Borrowing power = sum over holdings of value x (1 - initial requirement), the initial
  requirement being the security's own or 1 - the borrow share (40% borrowable), less the
  loan (and loans approved but not booked yet), never negative, rounded down to the cent.
- A call is due when equity < requirement: ``requirement - equity`` rounded up to the cent
  (a deposit of exactly that amount meets it).
- Liquidation sells ``shortfall / rate`` (the rate being the account's effective maintenance
  rate, requirement / market value) plus a buffer: selling S and repaying the loan with it
  keeps equity and lowers the requirement by S x rate.

The set-based equity watch (store.evaluate) applies the same formulas in SQL; the tests hold
both to these functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from shared.calendar import NEW_YORK, nyse
from shared.money import ZERO, cents_down, cents_up

ELIGIBLE_KINDS = ("individual", "joint", "trust")
DAYS_PER_YEAR = Decimal("365")


@dataclass(frozen=True)
class Rules:
    """The configurable figures (shared/settings.py ``margin_*``)."""

    borrow_share: Decimal = Decimal("0.40")
    minimum_invested: Decimal = Decimal("2000.00")
    max_concentration: Decimal = Decimal("0.60")
    maintenance_rate: Decimal = Decimal("0.30")
    regulatory_minimum: Decimal = Decimal("0.25")
    hard_floor: Decimal = Decimal("0.25")
    call_days: int = 3
    liquidation_buffer: Decimal = Decimal("0.05")
    rate_plus: Decimal = Decimal("0.0725")
    rate_basic: Decimal = Decimal("0.0875")

    @classmethod
    def from_settings(cls, s: Any) -> Rules:
        return cls(borrow_share=s.margin_borrow_share, minimum_invested=s.margin_minimum_invested,
                   max_concentration=s.margin_max_concentration, maintenance_rate=s.margin_maintenance_rate,
                   regulatory_minimum=s.margin_regulatory_minimum, hard_floor=s.margin_hard_floor,
                   call_days=s.margin_call_days, liquidation_buffer=s.margin_liquidation_buffer,
                   rate_plus=s.margin_rate_plus, rate_basic=s.margin_rate_basic)


@dataclass(frozen=True)
class Holding:
    """One position at its last price, with the security's own requirements (None: house)."""

    symbol: str
    quantity: Decimal
    price: Decimal
    initial: Decimal | None = None
    maintenance: Decimal | None = None

    @property
    def value(self) -> Decimal:
        return self.quantity * self.price


@dataclass(frozen=True)
class Figures:
    """An account's margin figures, unrounded (round for display only)."""

    market_value: Decimal
    cash: Decimal
    loan: Decimal
    requirement: Decimal
    capacity: Decimal  # borrowable value before the loan

    @property
    def equity(self) -> Decimal:
        return self.market_value + self.cash - self.loan


def maintenance_rate(own: Decimal | None, rules: Rules) -> Decimal:
    return max(own if own is not None else rules.maintenance_rate, rules.regulatory_minimum)


def initial_rate(own: Decimal | None, rules: Rules) -> Decimal:
    return own if own is not None else 1 - rules.borrow_share


def market_value(holdings: Iterable[Holding]) -> Decimal:
    return sum((h.value for h in holdings), ZERO)


def requirement(holdings: Iterable[Holding], rules: Rules) -> Decimal:
    return sum((h.value * maintenance_rate(h.maintenance, rules) for h in holdings), ZERO)


def capacity(holdings: Iterable[Holding], rules: Rules) -> Decimal:
    return sum((h.value * (1 - initial_rate(h.initial, rules)) for h in holdings), ZERO)


def figures(holdings: Sequence[Holding], cash: Decimal, loan: Decimal, rules: Rules) -> Figures:
    return Figures(market_value(holdings), cash, loan, requirement(holdings, rules), capacity(holdings, rules))


def equity(market_value: Decimal, cash: Decimal, loan: Decimal) -> Decimal:
    return market_value + cash - loan


def borrowing_power(f: Figures, pending: Decimal = ZERO) -> Decimal:
    """What can still be borrowed: the capacity less the loan and loans on their way."""
    return max(cents_down(f.capacity - f.loan - pending), Decimal("0.00"))


def amount_due(f: Figures) -> Decimal | None:
    """The call's amount when equity is below the requirement, else None."""
    shortfall = f.requirement - f.equity
    return cents_up(shortfall) if shortfall > 0 else None


def under_hard_floor(f: Figures, rules: Rules) -> bool:
    return f.loan > 0 and f.equity < rules.hard_floor * f.market_value


def liquidation_amount(f: Figures, rules: Rules) -> Decimal:
    """Holdings to sell so that the proceeds, repaying the loan, bring equity back to the
    requirement: shortfall / effective maintenance rate, plus the buffer; rounded up to the
    cent, never more than the holdings are worth (rounded down) nor less than a cent."""
    shortfall = f.requirement - f.equity
    if shortfall <= 0 or f.market_value <= 0:
        return Decimal("0.00")
    rate = f.requirement / f.market_value
    wanted = cents_up(shortfall / rate * (1 + rules.liquidation_buffer))
    return max(min(wanted, cents_down(f.market_value)), Decimal("0.01"))


def eligibility_refusal(kind: str | None, f: Figures, rules: Rules) -> str | None:
    """Why this account cannot borrow at all, or None."""
    if kind not in ELIGIBLE_KINDS:
        return (f"margin is available to {', '.join(ELIGIBLE_KINDS)} accounts only, not to a "
                f"{(kind or 'unknown').replace('_', ' ')} account")
    if f.market_value < rules.minimum_invested:
        return (f"margin needs at least ${rules.minimum_invested} invested; the holdings are worth "
                f"${cents_down(f.market_value)}")
    return None


def borrow_refusal(kind: str | None, holdings: Sequence[Holding], cash: Decimal, loan: Decimal,
                   pending: Decimal, amount: Decimal, rules: Rules) -> str | None:
    """Why a borrow of ``amount`` is refused, or None when it may be booked."""
    f = figures(holdings, cash, loan, rules)
    if (reason := eligibility_refusal(kind, f, rules)) is not None:
        return reason
    for h in holdings:
        if f.market_value > 0 and h.value / f.market_value > rules.max_concentration:
            share = (h.value / f.market_value * 100).quantize(Decimal("0.1"))
            return (f"the portfolio is not diversified enough to borrow: {h.symbol} is {share}% of its value "
                    f"(at most {format((rules.max_concentration * 100).normalize(), 'f')}%)")
    if f.equity < f.requirement:
        return "the account is under its maintenance requirement (margin call); it cannot borrow more"
    power = borrowing_power(f, pending)
    if amount > power:
        return f"requested ${amount} exceeds the borrowing power of ${power}"
    return None


def annual_rate(plan: str | None, rules: Rules) -> Decimal:
    return rules.rate_plus if plan == "plus" else rules.rate_basic


def daily_interest(loan: Decimal, rate: Decimal) -> Decimal:
    """One day's interest on the loan (actual/365), unrounded: charged to the cent monthly."""
    return loan * rate / DAYS_PER_YEAR


def month_end(day: date) -> bool:
    return (day + timedelta(days=1)).month != day.month


def charge_of(accrued: Decimal) -> Decimal:
    """The month's charge: the accrued interest rounded down to the cent (the remainder
    carries into the next month, so nothing is charged that has not accrued)."""
    return cents_down(accrued) if accrued > 0 else Decimal("0.00")




def call_deadline(issued_at: datetime, days: int) -> datetime:
    """The close of the ``days``-th NYSE session after the New York date of ``issued_at``
    (a call issued on Friday with 3 days is due at Wednesday's close)."""
    day = issued_at.astimezone(NEW_YORK).date()
    calendar = nyse(day.year)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = calendar.date_to_session(day.isoformat(), direction="previous")
        session = calendar.session_offset(start, max(days, 0))
        return calendar.session_close(session).to_pydatetime()


def local_date(moment: datetime) -> date:
    return moment.astimezone(NEW_YORK).date()


def start_of(day: date) -> datetime:
    return datetime.combine(day, time(0), NEW_YORK)
