"""Market rules: the price list and how the venue simulator fills a net order. Pure; no I/O."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from pydantic import TypeAdapter, ValidationError

from shared.contracts import Execution, NetOrder, Price, Symbol
from shared.money import cents, shares_down

_SYMBOL = TypeAdapter(Symbol)
_PRICE = TypeAdapter(Price)


class Refusal(Exception):
    """Orders the venue will not execute, with the reason."""


@dataclass(frozen=True)
class Quote:
    """What the venue knows of one security."""

    symbol: str
    price: Decimal
    active: bool


@dataclass(frozen=True)
class Listing:
    """One row of a price list: a security, its price and its name."""

    symbol: str
    price: Decimal
    name: str


def parse_price_list(text: str) -> list[Listing]:
    """Read a ``symbol,price,name`` CSV. Symbols and prices follow the contract's rules
    (prices as decimal strings, at most 6 decimals); a bad or repeated row is an error."""
    listings: list[Listing] = []
    seen: set[str] = set()
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            symbol = _SYMBOL.validate_python((row.get("symbol") or "").strip())
            price = _PRICE.validate_python((row.get("price") or "").strip())
        except ValidationError as exc:
            raise ValueError(f"price list line {line}: {exc.errors(include_url=False)[0]['msg']}") from exc
        if symbol in seen:
            raise ValueError(f"price list line {line}: {symbol} is listed twice")
        seen.add(symbol)
        listings.append(Listing(symbol, price, (row.get("name") or "").strip()))
    return listings


def fill(order: NetOrder, price: Decimal) -> Execution:
    """Fill one net order in full at ``price``: the whole shares and 1/100,000ths the notional
    buys (rounded down, so a buy never costs more than its notional), for the exact cents.
    A zero notional fills zero shares for $0.00 and still reports the price."""
    quantity = shares_down(order.notional / price)
    return Execution(symbol=order.symbol, side=order.side, quantity=quantity, price=price,
                     amount=cents(quantity * price))


def execute(orders: Sequence[NetOrder], quotes: Mapping[str, Quote]) -> list[Execution]:
    """Fill every order of one window, or refuse them all with every reason at once."""
    if not orders:
        raise Refusal("no orders to execute")
    problems = [f"{symbol} is ordered {n} times" for symbol, n in Counter(o.symbol for o in orders).items() if n > 1]
    for order in orders:
        quote = quotes.get(order.symbol)
        if order.notional < 0:
            problems.append(f"{order.symbol}: notional must not be negative, got {order.notional}")
        elif quote is None:
            problems.append(f"unknown symbol {order.symbol}")
        elif not quote.active:
            problems.append(f"{order.symbol} is inactive and cannot be traded")
    if problems:
        raise Refusal("; ".join(problems))
    return [fill(order, quotes[order.symbol].price) for order in orders]
