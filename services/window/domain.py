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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any
from uuid import UUID

from shared.calendar import NEW_YORK, nyse
from shared.contracts import Execution, Fill, Intent, IntentSource, IntentsSubmitted, NetOrder, Residue, Side
from shared.money import PRICE_STEP, SHARE_STEP, cents_down, cents_up, shares_down, shares_up

ZERO = Decimal("0")


class Refusal(Exception):
    """Intents or executions the window will not take, with the reason."""


def check_batch(batch: IntentsSubmitted) -> None:
    """A batch holds intents of the batch's own account, each id once."""
    problems = []
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
SHARES_UNFUNDED = "insufficient cash for the shares at the last price plus the price margin"
NOT_HELD = "nothing left to sell: the account does not hold the shares"
HALTED_FUNDING = "insufficient cash: a sale that was to pay for it is in a halted security and carried over"
LEDGER_SHORT = ("insufficient cash: the account's cash at the ledger was lower than the window counted "
                "(a withdrawal held or paid, or a charge booked meanwhile)")


def abandoned_reason(operator_reason: str) -> str:
    """What the holder of an intent in an abandoned window is told."""
    return f"its window was stopped before it traded ({operator_reason})"


def check_abandon(window_id: object, status: str) -> None:
    """Only a window that has sent no orders can be abandoned: once its orders are at the
    venue, what it traded must be allocated and booked."""
    if status not in ("holding", "abandoned"):
        raise Refusal(f"window {window_id} is {status}: it has sent its orders to the venue, so it cannot be "
                      "abandoned (only a window still holding, before its orders, can)")


def waiting_for(status: str, batches: int | None, booked: int | None) -> str | None:
    """What a window not finished yet waits for, in an operator's words (None once it is
    done: every fills batch booked, or abandoned). ``booked`` is None for a window allocated
    before the window counted the ledger's bookings: not known to wait."""
    if status == "holding":
        return "the ledger to hold its buys' cash (ledger.window.hold); no order sent yet"
    if status == "executing":
        return "the venue's executions of its orders (market.orders.execute)"
    if status == "allocated" and batches and booked is not None and booked < batches:
        return f"the ledger to book its fills: {booked} of {batches} batches booked (window.fills.batch)"
    return None


# A share-quantity intent's dollar value is known only at execution. For funding, a share
# buy is counted at its last price plus this margin, and a share sell's proceeds at the last
# price less it, so that a price move until the window's execution does not overspend.
SHARE_PRICE_MARGIN = Decimal("0.05")
CENT = Decimal("0.01")


def share_buy_cost(quantity: Decimal, price: Decimal | None) -> Decimal | None:
    """What a share buy is funded for: its last-price value plus the margin, rounded up."""
    return None if price is None else cents_up(quantity * price * (1 + SHARE_PRICE_MARGIN))


def share_sell_proceeds(quantity: Decimal, price: Decimal | None) -> Decimal:
    """What a share sell's proceeds count for in funding: last price less the margin, down."""
    return ZERO if price is None else cents_down(quantity * price * (1 - SHARE_PRICE_MARGIN))


def dollar_sells_proceeds(amount: Decimal, held: Decimal | None, sold_by_quantity: Decimal,
                          price: Decimal | None, sells: int = 1) -> Decimal:
    """What an account's ``sells`` dollar sells of one security (``amount`` in all) count for
    in funding: their amount, but no more than the shares its share sells leave of ``held``
    are worth at the last price less the margin, rounded down (the allocation never delivers
    more shares than were held, and the venue never trades below that price:
    ``price_limits``). Each sell but the last delivers its shares rounded up, up to one
    1/100,000 share more than its amount is worth, which the last then cannot sell: those
    steps are left out. In full when the holding or the price is unknown."""
    if held is None or price is None:
        return amount
    shares = max(held - sold_by_quantity - (sells - 1) * SHARE_STEP, ZERO)
    return min(amount, cents_down(shares * price * (1 - SHARE_PRICE_MARGIN)))


def price_limits(price: Decimal) -> tuple[Decimal, Decimal]:
    """The prices an order funded at the last price ``price`` may trade at: within the
    margin either way, rounded inward to the price's 6 decimals. Within them a share buy
    costs no more than it was funded for, and a sell's proceeds are no less than counted."""
    return ((price * (1 - SHARE_PRICE_MARGIN)).quantize(PRICE_STEP, rounding=ROUND_CEILING),
            (price * (1 + SHARE_PRICE_MARGIN)).quantize(PRICE_STEP, rounding=ROUND_FLOOR))


def clamp(wanted: Sequence[Decimal], available: Decimal | None) -> list[Decimal]:
    """Sells of one account and security, in order, limited together to ``available`` shares
    (no limit when unknown): each gets what is left after the ones before it."""
    if available is None:
        return list(wanted)
    limit, total, out = max(available, ZERO), ZERO, []
    for w in wanted:
        out.append(min(total + w, limit) - min(total, limit))
        total += w
    return out


@dataclass(frozen=True)
class Funding:
    """What a window funds of each intent (``funded``: intent id -> dollar amount;
    ``shares``: intent id -> share quantity) and what it drops (``rejected``: intent id ->
    reason). ``needs``: per account with funded buys, what they cost beyond its sells'
    proceeds as funding counted them (0 when the sells pay for them all), which its own cash
    pays (the window asks the ledger to hold it; listed at 0 too, so that the ledger can say
    when held withdrawals claim the proceeds first)."""

    funded: dict[UUID, Decimal]
    rejected: dict[UUID, str]
    shares: dict[UUID, Decimal] = field(default_factory=dict)
    needs: dict[str, Decimal] = field(default_factory=dict)

    def apply(self, intents: Iterable[Intent]) -> list[Intent]:
        """The funded intents, each with its funded amount or quantity."""
        out = []
        for i in intents:
            if i.intent_id in self.funded:
                out.append(i.model_copy(update={"amount": self.funded[i.intent_id]}))
            elif i.intent_id in self.shares:
                out.append(i.model_copy(update={"quantity": self.shares[i.intent_id]}))
        return out


def fund(intents: Sequence[Intent], cash: Mapping[str, Decimal], prices: Mapping[str, Decimal] | None = None,
         positions: Mapping[tuple[str, str], Decimal] | None = None) -> Funding:
    """Share sells are funded up to the shares held (``positions``, by account and security:
    sells in intent order share what is held; no limit when unknown), dollar sells up to what
    the shares the share sells leave are worth at the lowest price the venue may fill at
    (``dollar_sells_proceeds``; in intent order), so that the venue never sells more shares
    than the account holds; a sell left with nothing is dropped with ``NOT_HELD``. An account's buys are funded by its cash
    plus the proceeds of its sells in the window (share sells at ``share_sell_proceeds``,
    dollar sells at ``dollar_sells_proceeds``),
    tier by tier in ``PRIORITY`` order: a tier the money covers is funded in full; the first
    it does not cover has its dollar buys scaled pro rata to what is left (``amount * left /
    tier total``, rounded down to the cent, exactly) and its share buys (counted at
    ``share_buy_cost``) dropped with ``SHARES_UNFUNDED``; later tiers get nothing. A dollar
    buy funded under $1 is dropped with ``UNDER_MINIMUM``; the cash it would have used stays
    in the account."""
    prices = prices or {}
    positions = positions or {}
    funded: dict[UUID, Decimal] = {}
    shares: dict[UUID, Decimal] = {}
    rejected: dict[UUID, str] = {}
    needs: dict[str, Decimal] = {}
    by_account: dict[str, list[Intent]] = defaultdict(list)
    for intent in intents:
        by_account[intent.account_id].append(intent)
    for account, group in by_account.items():
        available = cash.get(account, ZERO)
        share_sells: dict[str, list[Intent]] = defaultdict(list)
        dollar_sells: dict[str, list[Intent]] = defaultdict(list)
        tiers: dict[int, list[Intent]] = defaultdict(list)
        for intent in group:
            if intent.side is Side.BUY:
                tiers[PRIORITY[intent.source]].append(intent)
            elif intent.amount is not None:
                dollar_sells[intent.symbol].append(intent)
            else:
                share_sells[intent.symbol].append(intent)
        sold_by_quantity: dict[str, Decimal] = defaultdict(Decimal)
        for symbol, sells in share_sells.items():
            for intent, q in zip(sells, clamp([i.quantity for i in sells], positions.get((account, symbol)))):
                if q > 0:
                    shares[intent.intent_id] = q
                    sold_by_quantity[symbol] += q
                    available += share_sell_proceeds(q, prices.get(symbol))
                else:
                    rejected[intent.intent_id] = NOT_HELD
        for symbol, sells in dollar_sells.items():
            amounts = [i.amount for i in sells]
            worth = dollar_sells_proceeds(sum(amounts, ZERO), positions.get((account, symbol)),
                                          sold_by_quantity[symbol], prices.get(symbol), len(amounts))
            for intent, amount in zip(sells, clamp(amounts, worth)):
                if amount > 0:
                    funded[intent.intent_id] = amount
                else:
                    rejected[intent.intent_id] = NOT_HELD
            available += worth
        proceeds = available - cash.get(account, ZERO)
        spent = ZERO
        before = ZERO
        for _, tier in sorted(tiers.items()):
            costs = {i.intent_id: (i.amount if i.amount is not None
                                   else share_buy_cost(i.quantity, prices.get(i.symbol))) for i in tier}
            demand = sum((c for c in costs.values() if c is not None), ZERO)
            left = available - before
            for intent in tier:
                if intent.amount is None:
                    if costs[intent.intent_id] is not None and left >= demand:
                        shares[intent.intent_id] = intent.quantity
                        spent += costs[intent.intent_id]
                    else:
                        rejected[intent.intent_id] = SHARES_UNFUNDED
                    continue
                if left >= demand:
                    amount = intent.amount
                elif left <= 0:
                    amount = ZERO
                else:  # exact: integer division of cents, rounded toward zero
                    amount = (intent.amount * left * 100 // demand) / 100
                if amount >= MINIMUM_BUY:
                    funded[intent.intent_id] = amount.quantize(CENT)
                    spent += funded[intent.intent_id]
                else:
                    rejected[intent.intent_id] = UNDER_MINIMUM
            before += demand
        if spent > 0:
            needs[account] = max(spent - proceeds, ZERO)
    return Funding(funded, rejected, shares, needs)


def check_executions(orders: Sequence[NetOrder], executions: Sequence[Execution],
                     halted: Mapping[str, str] | None = None, refused: Mapping[str, str] | None = None) -> None:
    """The venue's answer must cover exactly the window's orders: per ordered security one
    execution on the order's side, a halt, or a refusal."""
    ordered = {o.symbol: o for o in orders}
    halted = halted or {}
    refused = refused or {}
    problems = [f"{s} executed {n} times" for s, n in Counter(e.symbol for e in executions).items() if n > 1]
    executed = {e.symbol: e for e in executions}
    problems += [f"{s} both executed and halted" for s in executed if s in halted]
    problems += [f"{s} both refused and executed or halted" for s in refused if s in executed or s in halted]
    problems += [f"halt for {s}, which has no intents in this window" for s in halted if s not in ordered]
    problems += [f"refusal for {s}, which has no intents in this window" for s in refused if s not in ordered]
    problems += [f"no execution for {s}" for s in ordered
                 if s not in executed and s not in halted and s not in refused]
    problems += [f"execution for {s}, which has no intents in this window" for s in executed if s not in ordered]
    problems += [f"{s} executed as a {e.side} for a net {ordered[s].side} order" for s, e in executed.items()
                 if s in ordered and ordered[s].shares == 0 and e.side != ordered[s].side]
    if problems:
        raise Refusal("; ".join(problems))


def _signed(side: Side, value: Decimal) -> Decimal:
    return value if side is Side.BUY else -value


def _by_symbol(intents: Iterable[Intent]) -> dict[str, list[Intent]]:
    groups: dict[str, list[Intent]] = defaultdict(list)
    for intent in intents:
        groups[intent.symbol].append(intent)
    return dict(sorted(groups.items()))


def net_orders(intents: Iterable[Intent], prices: Mapping[str, Decimal] | None = None) -> list[NetOrder]:
    """One order per security that has intents, sorted by symbol: net notional = dollar buys
    - dollar sells, a buy when that is positive or zero, a sell otherwise; ``shares`` = share
    buys - share sells. A zero net still goes to the venue so that the window learns the
    price at which its crossed intents change hands. An order with a sell or a share intent
    was funded at the security's last price (``prices``): it carries ``price_limits`` of it."""
    prices = prices or {}
    orders = []
    for symbol, group in _by_symbol(intents).items():
        net = sum((_signed(i.side, i.amount) for i in group if i.amount is not None), ZERO)
        shares = sum((_signed(i.side, i.quantity) for i in group if i.amount is None), ZERO)
        limited = symbol in prices and any(i.side is Side.SELL or i.amount is None for i in group)
        low, high = price_limits(prices[symbol]) if limited else (None, None)
        orders.append(NetOrder(symbol=symbol, side=Side.BUY if net >= 0 else Side.SELL, notional=abs(net),
                               shares=shares, min_price=low, max_price=high))
    return orders


@dataclass(frozen=True)
class Allocation:
    fills: list[Fill]
    residues: list[Residue]


def fill_of(intent: Intent, price: Decimal, held: Decimal | None = None) -> Fill:
    """One intent at the window price. A dollar buy gets the shares its amount buys (rounded
    down) for exactly its amount; a dollar sell delivers the shares its amount is worth
    (rounded up) for exactly its amount, unless that is more than the ``held`` shares left
    for it: then it delivers those and receives their value rounded down to the cent. A
    share buy pays its shares' value rounded up to the cent, a share sell receives it
    rounded down."""
    if intent.amount is None:
        value = intent.quantity * price
        amount = cents_up(value) if intent.side is Side.BUY else cents_down(value)
        return Fill(intent_id=intent.intent_id, account_id=intent.account_id, symbol=intent.symbol,
                    side=intent.side, quantity=intent.quantity, amount=amount, price=price)
    exact = intent.amount / price
    quantity = shares_down(exact) if intent.side is Side.BUY else shares_up(exact)
    amount = intent.amount
    if intent.side is Side.SELL and held is not None and quantity > held:
        quantity, amount = max(held, ZERO), cents_down(max(held, ZERO) * price)
    return Fill(intent_id=intent.intent_id, account_id=intent.account_id, symbol=intent.symbol, side=intent.side,
                quantity=quantity, amount=amount, price=price)


def _allocate_symbol(group: Sequence[Intent], price: Decimal,
                     positions: Mapping[tuple[str, str], Decimal]) -> list[Fill]:
    """Fills of one security: dollar sells of an account share, in order, what it holds
    after its share sells."""
    left: dict[str, Decimal | None] = {}
    for intent in group:
        if intent.account_id not in left:
            held = positions.get((intent.account_id, intent.symbol))
            share_sells = sum((i.quantity for i in group if i.account_id == intent.account_id
                               and i.side is Side.SELL and i.amount is None), ZERO)
            left[intent.account_id] = None if held is None else held - share_sells
    fills = []
    for intent in group:
        is_dollar_sell = intent.side is Side.SELL and intent.amount is not None
        held = left[intent.account_id] if is_dollar_sell else None
        f = fill_of(intent, price, held)
        if is_dollar_sell and held is not None:
            left[intent.account_id] = held - shares_up(intent.amount / price)
        fills.append(f)
    return fills


def residue_of(execution: Execution, fills: Sequence[Fill]) -> Residue:
    """What the firm keeps (positive) or supplies (negative) of one security so that street,
    customers and firm sum to zero in cash and in shares."""
    customers_cash = sum((_signed(f.side, f.amount) for f in fills), ZERO)
    customers_shares = sum((_signed(f.side, f.quantity) for f in fills), ZERO)
    return Residue(symbol=execution.symbol,
                   quantity=_signed(execution.side, execution.quantity) - customers_shares,
                   amount=customers_cash - _signed(execution.side, execution.amount))


def allocate(intents: Sequence[Intent], executions: Sequence[Execution],
             positions: Mapping[tuple[str, str], Decimal] | None = None) -> Allocation:
    """Allocate a window's executions back to its frozen intents (one execution per security
    that has intents; ``check_executions`` checks them against the window's orders, whose
    side the intents may no longer show once a halt made the window fund them again).
    ``positions`` (by account and
    security; unknown means no limit) caps what dollar sells deliver."""
    groups = _by_symbol(intents)
    by_symbol = {e.symbol: e for e in executions}
    problems = [f"{s} executed {n} times" for s, n in Counter(e.symbol for e in executions).items() if n > 1]
    problems += [f"no execution for {s}" for s in groups if s not in by_symbol]
    problems += [f"execution for {s}, which has no intents in this window" for s in by_symbol if s not in groups]
    if problems:
        raise Refusal("; ".join(problems))
    fills: list[Fill] = []
    residues: list[Residue] = []
    for symbol, group in groups.items():
        execution = by_symbol[symbol]
        symbol_fills = _allocate_symbol(group, execution.price, positions or {})
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
        buys = sum((i.amount for i in group if i.side is Side.BUY and i.amount is not None), ZERO)
        sells = sum((i.amount for i in group if i.side is Side.SELL and i.amount is not None), ZERO)
        shares = sum((_signed(i.side, i.quantity) for i in group if i.amount is None), ZERO)
        e, r = by_symbol[symbol], residue_of_symbol[symbol]
        securities[symbol] = {
            "intents": len(group), "gross_buy": _text(buys), "gross_sell": _text(sells), "net": _text(buys - sells),
            "net_shares": _text(shares),
            "side": e.side.value, "price": _text(e.price), "quantity": _text(e.quantity), "amount": _text(e.amount),
            "residue_quantity": _text(r.quantity), "residue_amount": _text(r.amount),
        }
    return {"intents": len(intents), "accounts": len({i.account_id for i in intents}), "securities": securities}


# ---------------------------------------------------------------- schedule

MORNING, AFTERNOON = "morning", "afternoon"
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




def slots_on(day: date) -> list[Slot]:
    """The day's windows on the NYSE calendar: none on a weekend or holiday; 09:30 and 15:00
    New York time, the afternoon one moved to 30 minutes before an early close."""
    calendar = nyse(day.year)
    with warnings.catch_warnings():  # pandas deprecation notices from inside the library
        warnings.simplefilter("ignore")
        if not calendar.is_session(day.isoformat()):
            return []
        close = calendar.session_close(day.isoformat()).to_pydatetime()
    morning = datetime.combine(day, MORNING_AT, NEW_YORK)
    afternoon = min(datetime.combine(day, AFTERNOON_AT, NEW_YORK), close - EARLY_CLOSE_LEAD)
    return [Slot(morning.astimezone(UTC), MORNING), Slot(afternoon.astimezone(UTC), AFTERNOON)]


def owed_slots(now: datetime, started: datetime, last_ran: datetime | None) -> list[Slot]:
    """The windows the schedule owes at ``now``, in order: every one that has started since
    the schedule did (``started``) and after the last one that ran (within the last 10 days).
    One run takes them all: each account's intents pending when its latest owed window
    started (``cutoffs``)."""
    today = now.astimezone(NEW_YORK).date()
    return [s for back in range(10, -1, -1) for s in slots_on(today - timedelta(days=back))
            if started <= s.starts_at <= now and (last_ran is None or s.starts_at > last_ran)]


def cutoffs(owed: Sequence[Slot]) -> dict[str, datetime]:
    """Per session, when its latest owed window started: an account that trades in one
    window takes what it had pending then; one that trades in both, the latest of them."""
    return {s.session: s.starts_at for s in owed}


@dataclass(frozen=True)
class Run:
    """One run of the schedule: the latest owed window (``slot``: the run's id and session)
    and, when a missed window of the other session is owed too, when it started
    (``other_at``: the accounts trading only in that one take what they had pending then)."""

    slot: Slot
    other_at: datetime | None

    @property
    def refusal(self) -> str:
        """Why a cancel of an intent this run will take is refused."""
        local = self.slot.starts_at.astimezone(NEW_YORK)
        return f"its window ({self.slot.session}, {local:%Y-%m-%d %H:%M} New York) has started"


def run_of(owed: Sequence[Slot]) -> Run | None:
    """The run that takes the ``owed`` windows (None when none is owed)."""
    if not owed:
        return None
    slot = owed[-1]
    return Run(slot, next((at for session, at in cutoffs(owed).items() if session != slot.session), None))


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
