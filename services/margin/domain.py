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
- A liquidation is closed, and repays the loan, by its own sells alone: the fills of the
  intents of the batch the pie answered its ``pie.cash.raise`` with (``settle_liquidations``).

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
from uuid import UUID

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


# ---------------------------------------------------------------- a liquidation's own sells


@dataclass(frozen=True)
class Liquidation:
    """A call being liquidated (``liquidating``) or liquidated, as far as its sells go:
    ``amount`` asked of the pie, ``raised`` by its sells counted so far; the pie's answer,
    ``planned`` dollars and the ``batch_id`` of its sells (None until it arrives), ``known``
    once the sells the answer named are kept, ``rejected`` once the window has rejected every
    one of them for good. ``legacy``: liquidating since before the pie's answer was kept; the
    account's next sells are its own."""

    call_id: UUID
    liquidating: bool
    amount: Decimal
    raised: Decimal = Decimal("0.00")
    planned: Decimal | None = None
    batch_id: UUID | None = None
    known: bool = False
    rejected: bool = False
    legacy: bool = False

    @property
    def waiting(self) -> bool:
        """Liquidating without knowing yet which sells are its own: the account's sells are
        kept until it does (the pie's answer may arrive after the fills)."""
        return self.liquidating and not self.legacy and self.planned != 0 and not self.known


@dataclass(frozen=True)
class SellBooked:
    """A booked sell that may be a liquidation's: its intent's liquidation batch, if the pie
    submitted it in one (None: not a liquidation's, or not known yet)."""

    window_id: UUID
    intent_id: UUID
    amount: Decimal
    batch_id: UUID | None = None


@dataclass(frozen=True)
class Settlement:
    """What a liquidation's sells booked now do: ``proceeds`` are counted (after
    ``raised_before``), ``repay`` goes to the loan, and the call ``closes`` as liquidated."""

    call_id: UUID
    sells: tuple[SellBooked, ...]
    proceeds: Decimal
    raised_before: Decimal
    repay: Decimal
    closes: bool


def liquidation_repayment(amount: Decimal, raised: Decimal, proceeds: Decimal, loan: Decimal) -> Decimal:
    """What a liquidation's proceeds booked now repay: all of them, up to what is left of the
    liquidation amount (``raised`` counted before) and up to the loan."""
    return max(min(proceeds, amount - raised, loan), Decimal("0.00"))


def settle_liquidations(liquidations: Sequence[Liquidation], sells: Iterable[SellBooked], loan: Decimal
                        ) -> tuple[list[Settlement], bool]:
    """Match booked sells to the liquidations they belong to and say what each does; second,
    whether the sells that matched none must be kept (a liquidation still waits to know its
    own) or may be forgotten.

    - A sell is a liquidation's when its intent is in the liquidation's batch (for a legacy
      liquidation: any sell of the account). Any other sell (a customer's order, a
      rebalance, a cover of a negative balance) is not: it neither closes the call nor
      repays the loan.
    - A liquidating call closes as liquidated when its own first sells are booked (its
      window), or at once when the pie had nothing to sell (planned 0) or the window rejected
      every one of its sells for good (nothing raised: the evaluation that follows calls the
      account again if it is still short). Its sells that carried over (a halted security)
      are counted when they fill later.
    - The proceeds repay the loan up to the liquidation amount (what its sells raised before
      counted) and the loan; liquidations in call order share the loan."""
    by_batch = {q.batch_id: q for q in liquidations if q.batch_id is not None}
    legacy = next((q for q in liquidations if q.liquidating and q.legacy), None)
    own: dict[UUID, list[SellBooked]] = {}
    for sell in sells:
        owner = by_batch.get(sell.batch_id) if sell.batch_id is not None else None
        if owner is None:
            owner = legacy
        if owner is not None:
            own.setdefault(owner.call_id, []).append(sell)
    out, left = [], loan
    for q in liquidations:
        mine = tuple(own.get(q.call_id, ()))
        closes = q.liquidating and (bool(mine) or q.planned == 0 or q.rejected)
        if not mine and not closes:
            continue
        proceeds = sum((s.amount for s in mine), Decimal("0.00"))
        repay = liquidation_repayment(q.amount, q.raised, proceeds, left)
        left -= repay
        out.append(Settlement(q.call_id, mine, proceeds, q.raised, repay, closes))
    return out, any(q.waiting for q in liquidations)


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
