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

An order's fill (``after_fill``): executed when it traded everything asked; partially executed
when the window funded less (a buy scaled to the cash) or delivered fewer shares (a sell
limited to the shares held), and then the rest is carried to the next window as the order's
next intent, unless it is too small to trade (``rest_ended``: what a rejected or cancelled
rest leaves).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from shared.contracts import OrderStatus, PieSpec, Side
from shared.money import cents_down, cents_up, shares_up

ZERO = Decimal("0")
MINIMUM_BUY = Decimal("1.00")
# A share order's dollar value is known only at execution: for funding a share buy is counted
# at its last price plus this margin and a share sell's proceeds at the last price less it
# (the window funds them the same way).
PRICE_MARGIN = Decimal("0.05")

PRICE_STEP = Decimal("0.000001")
_PART_NAMESPACE = uuid.UUID("0b7d4c52-6a1e-4f0b-9c3d-8e2f1a5b7c90")

# An order is open until it reaches a final state (the ``final`` flag of its row, published as
# ``OrderState.final``); ``partially_executed`` is both: open while its rest is carried to the
# next window, final when nothing more will trade.
OPEN = frozenset({OrderStatus.PENDING, OrderStatus.CARRIED_OVER, OrderStatus.PARTIALLY_EXECUTED})
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
class Progress:
    """An order after a fill of its current intent: its status, whether that is final, why,
    the fills so far, and the rest carried to the next window (None when nothing is carried)."""

    status: OrderStatus
    final: bool
    reason: str | None
    filled_quantity: Decimal
    filled_amount: Decimal
    price: Decimal
    rest_amount: Decimal | None = None
    rest_quantity: Decimal | None = None

    @property
    def carried(self) -> bool:
        return self.rest_amount is not None or self.rest_quantity is not None


def part_intent(order_id: uuid.UUID, part: int) -> uuid.UUID:
    """The id of an order's intent number ``part``: the order's id for the first, then one
    derived from the order's id and the number (the same every time, so a replay is a no-op)."""
    return order_id if part == 1 else uuid.uuid5(_PART_NAMESPACE, f"{order_id}:{part}")


def rest_words(amount: Decimal | None, quantity: Decimal | None) -> str:
    """``$40.00``, ``0.5 shares``."""
    return f"${amount:,.2f}" if amount is not None else f"{format(quantity.normalize(), 'f')} shares"


def average_price(quantity: Decimal | None, price: Decimal | None, fill_quantity: Decimal,
                  fill_price: Decimal) -> Decimal:
    """The quantity-weighted average of the price so far and a fill's, to 1/1,000,000 (half
    even); the fill's price when nothing traded before (or no shares at all)."""
    if not quantity or price is None or quantity + fill_quantity == 0:
        return fill_price
    return ((quantity * price + fill_quantity * fill_price) / (quantity + fill_quantity)).quantize(
        PRICE_STEP, rounding=ROUND_HALF_EVEN)


def after_fill(side: Side, rest_amount: Decimal | None, rest_quantity: Decimal | None,
               filled_quantity: Decimal | None, filled_amount: Decimal | None, price: Decimal | None,
               fill_quantity: Decimal, fill_amount: Decimal, fill_price: Decimal) -> Progress:
    """The order after the window filled its current intent (which asked ``rest_amount`` or
    ``rest_quantity``): fills add up and the price is their quantity-weighted average. What the
    intent asked less what it filled is the rest (dollars for a dollar order, shares for a
    share order):

    - nothing left: ``executed``, final;
    - a dollar rest under ``MINIMUM_BUY`` (no window trades less): not carried, final
      ``partially_executed`` with the rest named in the reason;
    - otherwise ``partially_executed`` and open: the rest goes to the next window as the
      order's next intent (a buy the window scaled to the cash, a sell limited to the shares
      held)."""
    total_q = (filled_quantity or ZERO) + fill_quantity
    total_a = (filled_amount or ZERO) + fill_amount
    avg = average_price(filled_quantity, price, fill_quantity, fill_price)
    base = dict(filled_quantity=total_q, filled_amount=total_a, price=avg)
    if rest_amount is not None:
        rest = rest_amount - fill_amount
        words = rest_words(rest, None)
    else:
        rest = rest_quantity - fill_quantity
        words = rest_words(None, rest)
    if rest <= 0:
        return Progress(OrderStatus.EXECUTED, True, None, **base)
    why = ("the window funded less than the order: the account's cash did not cover all of it" if side is Side.BUY
           else "the window sold less than the order: the account held fewer shares")
    if rest_amount is not None and rest < MINIMUM_BUY:
        return Progress(OrderStatus.PARTIALLY_EXECUTED, True,
                        f"{why}; the rest, {words}, is under the ${MINIMUM_BUY} a window trades and is not carried",
                        **base)
    return Progress(OrderStatus.PARTIALLY_EXECUTED, False, f"{why}; the rest, {words}, is carried to the next window",
                    rest_amount=rest if rest_amount is not None else None,
                    rest_quantity=rest if rest_quantity is not None else None, **base)


def rest_ended(filled: bool, rest_amount: Decimal | None, rest_quantity: Decimal | None, *,
               rejected: str | None = None) -> tuple[OrderStatus, str]:
    """The final state of an order whose current intent the window rejected (``rejected``:
    the window's reason) or cancelled (the holder's cancel): ``rejected`` / ``cancelled`` when
    nothing traded yet, else ``partially_executed`` with what happened to the rest."""
    if not filled:
        if rejected is not None:
            return OrderStatus.REJECTED, rejected
        return OrderStatus.CANCELLED, "cancelled by the holder before its window"
    rest = rest_words(rest_amount, rest_quantity)
    if rejected is not None:
        return OrderStatus.PARTIALLY_EXECUTED, f"the rest, {rest}, was rejected: {rejected}"
    return OrderStatus.PARTIALLY_EXECUTED, f"the rest, {rest}, was cancelled by the holder before its window"


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
