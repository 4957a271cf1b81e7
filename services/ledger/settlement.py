"""Settlement and holds: when money in an account can leave it. Pure; no I/O.

- A sale's proceeds settle ``settlement_days`` NYSE sessions after the trade date (T+1 by
  default); before that they are *unsettled* cash: they fund buys in the same or a later
  window, but they cannot be withdrawn.
- A deposit can be withdrawn ``deposit_hold_days`` business days (NYSE sessions, the
  nearest maintained calendar of US business days) after the day it was booked (6 by
  default); until then the amount is *on hold*.

Days are counted on the New York date of the booking: "n business days after day d" is the
n-th session after d (a Saturday deposit held 1 day is free on Monday); 0 days means the
same day, i.e. at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from shared.calendar import NEW_YORK, nyse

ZERO = Decimal("0.00")


def local_date(moment: datetime) -> date:
    """The New York calendar date of an aware timestamp (the ledger's business date)."""
    return moment.astimezone(NEW_YORK).date()




def business_days_after(day: date, days: int) -> date:
    """The ``days``-th NYSE session after ``day`` (``day`` itself for 0)."""
    if days <= 0:
        return day
    calendar = nyse(day.year)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = calendar.date_to_session(day.isoformat(), direction="previous")
        return calendar.session_offset(start, days).date()


def settles_on(booked_at: datetime, settlement_days: int) -> date:
    """When a sale booked at ``booked_at`` settles (its proceeds become withdrawable)."""
    return business_days_after(local_date(booked_at), settlement_days)


def clears_on(booked_at: datetime, hold_days: int) -> date:
    """When a deposit booked at ``booked_at`` can be withdrawn."""
    return business_days_after(local_date(booked_at), hold_days)


@dataclass(frozen=True)
class CashState:
    """An account's cash at one moment, split by what may leave it.

    ``cash`` is the ledger balance; ``unsettled`` the proceeds of sales not yet settled;
    ``on_hold`` deposits not yet withdrawable; ``held_withdrawals`` the withdrawals already
    waiting (they come first); ``committed`` the cash held for trade windows whose fills are
    not booked yet (their buys spend it: it counts as spent already).
    ``withdrawable`` is what a new withdrawal can take now.
    """

    cash: Decimal
    unsettled: Decimal = ZERO
    on_hold: Decimal = ZERO
    held_withdrawals: Decimal = ZERO
    committed: Decimal = ZERO

    @property
    def settled(self) -> Decimal:
        return self.cash - self.unsettled

    @property
    def withdrawable(self) -> Decimal:
        return max(self.cash - self.unsettled - self.on_hold - self.held_withdrawals - self.committed, ZERO)

    @property
    def free_after_holds(self) -> Decimal:
        """Cash that is not a held deposit, nor promised to a waiting withdrawal, nor held for
        a window's buys (settled or not): what a withdrawal may count on without selling
        anything."""
        return max(self.cash - self.on_hold - self.held_withdrawals - self.committed, ZERO)


def unsettled(sales: Iterable[tuple[Decimal, date]], today: date) -> Decimal:
    """Proceeds of the sales (amount, settlement date) that have not settled by ``today``."""
    return sum((amount for amount, day in sales if day > today), ZERO)


def on_hold(deposits: Iterable[tuple[Decimal, date]], today: date) -> Decimal:
    """Deposits (amount, date they clear) that cannot be withdrawn yet on ``today``."""
    return sum((amount for amount, day in deposits if day > today), ZERO)


class Decision:
    """What to do with a withdrawal request (``decide``)."""

    PAY = "pay"            # withdrawable now
    WAIT = "wait"          # the cash is there but not settled yet: held, paid when it settles
    SELL = "sell"          # held; the pie sells the shortfall
    REFUSE = "refuse"      # only held deposits could cover it, and there is nothing to sell


def decide(amount: Decimal, state: CashState, holds_securities: bool) -> str:
    """The rule for a new withdrawal of ``amount``:

    - within the withdrawable cash: paid now;
    - within the cash that is not on hold (only unsettled proceeds missing): held until the
      sales settle;
    - more than that: with securities to sell, held while the pie sells the shortfall (it
      refuses when the account's whole value is short); without any, and only because
      deposits are still on hold, refused with the date they clear (the money cannot leave
      before, and nothing would change by waiting in the queue for it).
    """
    if amount <= state.withdrawable:
        return Decision.PAY
    if amount <= state.free_after_holds:
        return Decision.WAIT
    if holds_securities or state.on_hold <= 0:
        return Decision.SELL
    return Decision.REFUSE


def payable(amount: Decimal, state: CashState) -> bool:
    """A held withdrawal can be paid now (the states' held withdrawals exclude it)."""
    return amount <= state.withdrawable


def days_horizon(days: int) -> timedelta:
    """A calendar span certainly longer than ``days`` business days (for SQL look-backs)."""
    return timedelta(days=2 * days + 14)
