"""Market rules: the price list and how the venue simulator fills a net order. Pure; no I/O."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from shared.contracts import Execution, NetOrder, Price, Side, Symbol, decimal_errors
from shared.money import PRICE_STEP, cents, shares_down

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
            reason = decimal_errors(exc)[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"price list line {line}: {reason}") from exc
        if symbol in seen:
            raise ValueError(f"price list line {line}: {symbol} is listed twice")
        seen.add(symbol)
        listings.append(Listing(symbol, price, (row.get("name") or "").strip()))
    return listings


NEW_YORK = ZoneInfo("America/New_York")
# Market-wide circuit breakers: the index's fall from the prior close that trips each level.
BREAKER_LEVELS = ((3, Decimal("0.20")), (2, Decimal("0.13")), (1, Decimal("0.07")))
BREAKER_HALT = timedelta(minutes=15)
# Levels 1 and 2 tripped at or after 15:25 New York time do not halt.
LATE_IN_THE_DAY = time(15, 25)


def slipped(price: Decimal, side: Side, bps: int) -> Decimal:
    """The venue's price with a slippage of ``bps`` basis points against the order: a buy
    pays more (rounded up to the price's 6 decimals), a sell gets less (rounded down)."""
    if bps == 0:
        return price
    if side is Side.BUY:
        return (price * (1 + Decimal(bps) / 10000)).quantize(PRICE_STEP, rounding=ROUND_UP)
    return (price * (1 - Decimal(bps) / 10000)).quantize(PRICE_STEP, rounding=ROUND_DOWN)


@dataclass(frozen=True)
class Breaker:
    level: int
    day: date
    until: datetime  # equal to the trip time when it does not halt

    def reason(self) -> str:
        return f"market-wide circuit breaker level {self.level}: trading halted until {self.until.isoformat()}"


def circuit_breaker(level: Decimal, prior_close: Decimal, now: datetime, tripped_today: Iterable[int]
                    ) -> Breaker | None:
    """The circuit breaker an index level trips, if any: level 3 at a 20% fall halts for the
    rest of the New York day; levels 2 (13%) and 1 (7%) halt 15 minutes, or not at all at
    or after 15:25. Each level trips once a day (a level already tripped returns None)."""
    fall = (prior_close - level) / prior_close
    tripped = next((n for n, threshold in BREAKER_LEVELS if fall >= threshold), None)
    if tripped is None or tripped in set(tripped_today):
        return None
    local = now.astimezone(NEW_YORK)
    if tripped == 3:
        until = datetime.combine(local.date() + timedelta(days=1), time(0), NEW_YORK).astimezone(UTC)
    elif local.time() >= LATE_IN_THE_DAY:
        until = now
    else:
        until = now + BREAKER_HALT
    return Breaker(tripped, local.date(), until)


def fill(order: NetOrder, price: Decimal) -> Execution:
    """Fill one net order in full at ``price``: the whole shares and 1/100,000ths the notional
    buys (rounded down, so a buy never costs more than its notional), plus the order's signed
    share quantity, for the exact cents. The execution's side is that of the resulting net
    quantity. A zero net fills zero shares for $0.00 and still reports the price."""
    dollars = shares_down(order.notional / price)
    net = (dollars if order.side is Side.BUY else -dollars) + order.shares
    side = order.side if order.shares == 0 else (Side.BUY if net >= 0 else Side.SELL)
    return Execution(symbol=order.symbol, side=side, quantity=abs(net), price=price,
                     amount=cents(abs(net) * price))


def direction(order: NetOrder, price: Decimal) -> Side:
    """The side an order trades on at ``price`` (before slippage): its dollar side, or with
    shares in it, the side of the whole net."""
    if order.shares == 0:
        return order.side
    dollars = order.notional / price
    return Side.BUY if (dollars if order.side is Side.BUY else -dollars) + order.shares >= 0 else Side.SELL


def execute(orders: Sequence[NetOrder], quotes: Mapping[str, Quote], halts: Mapping[str, str] | None = None,
            market_wide: str | None = None, slippage_bps: int = 0
            ) -> tuple[list[Execution], dict[str, str], dict[str, str]]:
    """Fill every order of one window. Orders in a halted security (or every order during a
    market-wide halt), and orders whose price, slippage included, falls outside their limits,
    are not filled: they come back in the second result with the reason.
    Orders for a security the venue does not list, or no longer trades, are refused one by
    one (third result, with the reason); the others still trade. A malformed set of orders
    (none, a security twice, a negative notional) is refused whole, with every reason."""
    if not orders:
        raise Refusal("no orders to execute")
    problems = [f"{symbol} is ordered {n} times" for symbol, n in Counter(o.symbol for o in orders).items() if n > 1]
    problems += [f"{o.symbol}: notional must not be negative, got {o.notional}" for o in orders if o.notional < 0]
    if problems:
        raise Refusal("; ".join(problems))
    refused = {}
    for order in orders:
        quote = quotes.get(order.symbol)
        if quote is None:
            refused[order.symbol] = f"unknown symbol {order.symbol}"
        elif not quote.active:
            refused[order.symbol] = f"{order.symbol} is inactive and cannot be traded"
    halts = halts or {}
    halted = {o.symbol: market_wide or halts[o.symbol] for o in orders
              if o.symbol not in refused and (market_wide or o.symbol in halts)}
    executions = []
    for order in orders:
        if order.symbol in halted or order.symbol in refused:
            continue
        quote = quotes[order.symbol].price
        price = slipped(quote, direction(order, quote), slippage_bps)
        if order.min_price is not None and not order.min_price <= price <= order.max_price:
            halted[order.symbol] = outside_limits(order, price)
        else:
            executions.append(fill(order, price))
    return executions, halted, refused


def outside_limits(order: NetOrder, price: Decimal) -> str:
    """Why an order was not traded at ``price``, outside its limits."""
    return (f"the price of {order.symbol} moved beyond the window's limits: it would trade at {price}, "
            f"outside {order.min_price}-{order.max_price}")
