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

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.contracts import Execution, Fill, Intent, IntentsSubmitted, NetOrder, Residue, Side
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
