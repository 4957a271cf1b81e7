"""Order rules: what an order may be, how it is funded, and what its fill means. Pure; no I/O.

Validation of a new order (``check``):
- the account exists and the security is a slice (a leaf, at any depth) of the account's pie;
- a dollar amount is positive and to the cent (the contract), a buy at least $1.00 (the window
  drops smaller buys); a share quantity is positive, to 1/100,000 (the contract);
- a sell is not larger than the holding: its shares (a dollar sell counted at the last price,
  rounded up) plus those of the account's open sells of the security are at most the shares
  held;
- a buy is fundable: its cost (a share buy at the last price plus ``PRICE_MARGIN``, rounded
  up) plus the cost of the account's open buys is at most the cash, plus the proceeds of its
  open sells (a share sell at the last price less the margin, rounded down), plus the
  deposits made with open orders and not booked yet (this order's included).

An order's fill (``outcome``): executed when it traded everything asked; partially executed
when the window funded less (a buy scaled to the cash) or delivered fewer shares (a sell
limited to the shares held).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from shared.contracts import OrderStatus, PieSpec, Side
from shared.money import cents_down, cents_up, shares_up

ZERO = Decimal("0")
MINIMUM_BUY = Decimal("1.00")
# A share order's dollar value is known only at execution: for funding a share buy is counted
# at its last price plus this margin and a share sell's proceeds at the last price less it
# (the window funds them the same way).
PRICE_MARGIN = Decimal("0.05")

OPEN = frozenset({OrderStatus.PENDING, OrderStatus.CARRIED_OVER})
FINAL = frozenset({OrderStatus.CANCELLED, OrderStatus.EXECUTED, OrderStatus.PARTIALLY_EXECUTED,
                   OrderStatus.REJECTED})


@dataclass(frozen=True)
class Order:
    """What funding and validation need of an order (new or open)."""

    side: Side
    symbol: str
    amount: Decimal | None = None
    quantity: Decimal | None = None
    # a deposit made with the order and not booked yet: it pays for the order when booked
    unbooked_deposit: Decimal = ZERO


def leaves(pie: PieSpec) -> list[str]:
    """The securities of a pie tree, at every depth, each once, sorted."""
    found: set[str] = set()

    def walk(p: PieSpec) -> None:
        for s in p.slices:
            if s.symbol is not None:
                found.add(s.symbol)
            else:
                walk(s.pie)

    walk(pie)
    return sorted(found)


def describe(side: Side | str, symbol: str, amount: Decimal | None, quantity: Decimal | None) -> str:
    """``buy $100.00 of VTI``, ``sell 1.5 shares of BND``."""
    side = Side(side)
    if amount is not None:
        return f"{side.value} ${amount:,.2f} of {symbol}"
    return f"{side.value} {format(quantity.normalize(), 'f')} shares of {symbol}"


def buy_cost(order: Order, price: Decimal | None) -> Decimal | None:
    """What a buy holds of the account's money: its amount, or its shares at the last price
    plus the margin, rounded up (None when no price is known)."""
    if order.amount is not None:
        return order.amount
    return None if price is None else cents_up(order.quantity * price * (1 + PRICE_MARGIN))


def sell_proceeds(order: Order, price: Decimal | None) -> Decimal:
    """What a sell counts for in funding: its amount, or its shares at the last price less
    the margin, rounded down (nothing when no price is known)."""
    if order.amount is not None:
        return order.amount
    return ZERO if price is None else cents_down(order.quantity * price * (1 - PRICE_MARGIN))


def sell_shares(order: Order, price: Decimal | None) -> Decimal | None:
    """The shares a sell needs: its quantity, or its amount at the last price, rounded up
    (None when no price is known)."""
    if order.quantity is not None:
        return order.quantity
    return None if price is None else shares_up(order.amount / price)


def available_cash(cash: Decimal, open_orders: Iterable[Order], prices: dict[str, Decimal]) -> Decimal:
    """Cash an order may still use: the cash, plus open sells' proceeds and deposits made with
    open orders and not booked yet, less what open buys hold."""
    total = cash
    for o in open_orders:
        total += o.unbooked_deposit
        if o.side is Side.SELL:
            total += sell_proceeds(o, prices.get(o.symbol))
        else:
            cost = buy_cost(o, prices.get(o.symbol))
            total -= cost if cost is not None else ZERO
    return total


def check(order: Order, *, account_known: bool, pie_symbols: Sequence[str] | None, cash: Decimal,
          held: Decimal, open_orders: Sequence[Order], prices: dict[str, Decimal]) -> list[str]:
    """Why the order cannot be placed (empty when it can). ``open_orders`` are the account's
    other open orders; ``held`` the account's shares of the order's security."""
    if not account_known:
        return ["unknown account"]
    errors = []
    if pie_symbols is None:
        errors.append("the account has no pie: an order buys or sells one of its slices")
    elif order.symbol not in pie_symbols:
        errors.append(f"{order.symbol} is not a slice of the account's pie")
    if order.quantity is not None and order.quantity <= 0:
        errors.append("the quantity must be positive")
    if order.side is Side.SELL and order.unbooked_deposit > 0:
        errors.append("a deposit pays for a buy, not a sell")
    if errors:
        return errors
    price = prices.get(order.symbol)
    if order.side is Side.BUY:
        if order.amount is not None and order.amount < MINIMUM_BUY:
            return [f"a buy is at least ${MINIMUM_BUY}"]
        cost = buy_cost(order, price)
        if cost is None:
            return [f"no price known for {order.symbol} to value the shares"]
        available = available_cash(cash, [*open_orders, order], prices) + cost  # without its own cost
        if cost > available:
            what = "a deposit with the order" if order.unbooked_deposit else "a deposit (--deposit)"
            return [f"insufficient cash: the buy needs ${cost:,.2f} and ${max(available, ZERO):,.2f} is available "
                    f"(cash, pending sells and deposits, less pending buys); add {what}"]
        return []
    needed = sell_shares(order, price)
    if needed is None:
        return [f"no price known for {order.symbol} to value the sell"]
    committed = ZERO
    for o in open_orders:
        if o.side is Side.SELL and o.symbol == order.symbol:
            committed += sell_shares(o, prices.get(o.symbol)) or ZERO
    free = held - committed
    if needed > free:
        return [f"the sell is larger than the holding: it needs {needed} shares of {order.symbol} and "
                f"{max(free, ZERO)} are held and not already being sold"]
    return []


@dataclass(frozen=True)
class Outcome:
    status: OrderStatus
    reason: str | None


def outcome(side: Side, amount: Decimal | None, quantity: Decimal | None, filled_amount: Decimal,
            filled_quantity: Decimal) -> Outcome:
    """Executed when the fill is everything the order asked; otherwise partially executed,
    with why (the rest is not carried: the window traded what could be paid or delivered)."""
    if amount is not None:
        short = filled_amount < amount
    else:
        short = filled_quantity < quantity
    if not short:
        return Outcome(OrderStatus.EXECUTED, None)
    if side is Side.BUY:
        return Outcome(OrderStatus.PARTIALLY_EXECUTED,
                       "the window funded less than the order: the account's cash did not cover all of it")
    return Outcome(OrderStatus.PARTIALLY_EXECUTED,
                   "the window sold less than the order: the account held fewer shares")


def cancel_outcome(refusal: str) -> OrderStatus | None:
    """What the window's refusal to cancel an intent means for its order: an intent already
    cancelled is a cancelled order; otherwise (its window started) the order stays open."""
    return OrderStatus.CANCELLED if refusal == "already cancelled" else None



UNKNOWN_INTENT = "unknown intent"
CANCEL_ASKS = 5


def ask_again(refusal: str, attempts: int) -> bool:
    """A cancel the window refused because it did not know the intent yet (the cancel can
    overtake the intent: they travel on different queues) is sent again, a few times."""
    return refusal == UNKNOWN_INTENT and attempts < CANCEL_ASKS
