"""The venue simulator's rules, without I/O."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.market import domain
from services.market.domain import Quote, Refusal
from shared.contracts import Execution, NetOrder, Side
from shared.settings import Settings

D = Decimal
SAMPLE = Path(__file__).parents[2] / "services" / "market" / "data" / "prices.csv"


def order(symbol: str, notional: str, side: Side = Side.BUY) -> NetOrder:
    return NetOrder(symbol=symbol, side=side, notional=notional)


QUOTES = {"VTI": Quote("VTI", D("250.00"), True), "BND": Quote("BND", D("72.50"), True),
          "OLD": Quote("OLD", D("10.00"), False)}


def test_a_buy_gets_the_shares_its_notional_buys_rounded_down():
    [e], _, _ = domain.execute([order("BND", "400.00")], QUOTES)
    assert (e.symbol, e.side, e.quantity, e.price) == ("BND", Side.BUY, D("5.51724"), D("72.50"))
    assert e.amount == D("400.00")  # 5.51724 x 72.50 = 399.9999 -> to the cent


def test_the_amount_is_the_filled_shares_times_the_price_to_the_cent():
    [e], _, _ = domain.execute([order("VGT", "322.00")], {"VGT": Quote("VGT", D("620.15"), True)})
    assert (e.quantity, e.amount) == (D("0.51922"), D("321.99"))  # 321.994283 -> 321.99


def test_a_sell_is_filled_the_same_way():
    [e], _, _ = domain.execute([order("VTI", "125.00", Side.SELL)], QUOTES)
    assert (e.side, e.quantity, e.amount) == (Side.SELL, D("0.50000"), D("125.00"))


def test_a_zero_order_fills_nothing_but_reports_the_price():
    [e], _, _ = domain.execute([order("VTI", "0.00")], QUOTES)
    assert (e.quantity, e.amount, e.price) == (D("0"), D("0"), D("250.00"))


def test_an_unknown_symbol_is_refused_with_the_reason_and_the_rest_still_trades():
    executions, halted, refused = domain.execute([order("VTI", "10.00"), order("NOPE", "10.00")], QUOTES)
    assert [e.symbol for e in executions] == ["VTI"] and halted == {}
    assert refused == {"NOPE": "unknown symbol NOPE"}


def test_an_inactive_symbol_is_not_traded():
    executions, _, refused = domain.execute([order("OLD", "10.00")], QUOTES, halts={"OLD": "news"})
    assert executions == [] and refused == {"OLD": "OLD is inactive and cannot be traded"}


def test_a_symbol_ordered_twice_is_refused():
    with pytest.raises(Refusal, match="VTI is ordered 2 times"):
        domain.execute([order("VTI", "10.00"), order("VTI", "5.00")], QUOTES)


def test_a_negative_notional_is_refused():
    with pytest.raises(Refusal, match="must not be negative"):
        domain.execute([order("VTI", "-1.00")], QUOTES)


def test_no_orders_is_refused():
    with pytest.raises(Refusal, match="no orders"):
        domain.execute([], QUOTES)


def test_the_sample_price_list_has_common_funds_at_cent_prices():
    listings = domain.parse_price_list(SAMPLE.read_text())
    symbols = {x.symbol for x in listings}
    assert {"VTI", "VXUS", "BND", "VOO", "QQQ", "AAPL", "NVDA"} <= symbols and len(listings) >= 25
    assert all(x.price > 0 and x.price == x.price.quantize(D("0.01")) and x.name for x in listings)


def test_a_price_list_with_a_bad_price_names_the_line():
    with pytest.raises(ValueError, match="line 3"):
        domain.parse_price_list("symbol,price,name\nVTI,250.00,Total\nBND,72.5001234,Bonds\n")


def test_a_price_list_with_a_repeated_symbol_is_refused():
    with pytest.raises(ValueError, match="VTI is listed twice"):
        domain.parse_price_list("symbol,price,name\nVTI,250.00,Total\nVTI,251.00,Total\n")


cents_amounts = st.integers(0, 10**11).map(lambda c: D(c).scaleb(-2))
prices = st.integers(1, 10**12).map(lambda p: D(p).scaleb(-6))


@given(cents_amounts, prices, st.sampled_from(Side))
def test_a_fill_never_exceeds_its_notional_and_misses_it_by_less_than_one_share_step(notional, price, side):
    e = domain.fill(NetOrder(symbol="X", side=side, notional=notional), price)
    assert e.quantity >= 0 and e.quantity == e.quantity.quantize(D("0.00001"))
    assert e.amount == e.amount.quantize(D("0.01"))
    assert e.amount <= notional
    assert notional - e.amount < price * D("0.00001") + D("0.005")


# ---------------------------------------------------------------- halts, breakers, slippage

from datetime import UTC, datetime  # noqa: E402


def test_an_order_in_a_halted_security_is_not_filled_and_says_why():
    executions, halted, _ = domain.execute([order("VTI", "10.00"), order("BND", "10.00")], QUOTES,
                                        halts={"VTI": "news pending"})
    assert [e.symbol for e in executions] == ["BND"] and halted == {"VTI": "news pending"}


def test_a_market_wide_halt_fills_nothing():
    executions, halted, _ = domain.execute([order("VTI", "10.00")], QUOTES, market_wide="circuit breaker")
    assert executions == [] and halted == {"VTI": "circuit breaker"}


def test_slippage_moves_the_price_against_the_order():
    assert domain.slipped(D("100.00"), Side.BUY, 5) == D("100.050000")
    assert domain.slipped(D("100.00"), Side.SELL, 5) == D("99.950000")
    assert domain.slipped(D("33.333333"), Side.BUY, 1) == D("33.336667")  # rounded up for a buy
    [e], _, _ = domain.execute([order("VTI", "100.00")], QUOTES, slippage_bps=10)
    assert e.price == domain.slipped(QUOTES["VTI"].price, Side.BUY, 10)


def test_an_order_priced_outside_its_limits_is_not_filled_and_says_why():
    """The window funded VTI's intents at $235 (limits $223.25-$246.75); the venue's $250
    is beyond them, so VTI is not traded (its intents carry over); BND within its limits is."""
    vti = NetOrder(symbol="VTI", side=Side.BUY, notional="100.00", min_price="223.25", max_price="246.75")
    bnd = NetOrder(symbol="BND", side=Side.SELL, notional="50.00", min_price="70.00", max_price="75.00")
    executions, halted, refused = domain.execute([vti, bnd], QUOTES)
    assert [e.symbol for e in executions] == ["BND"] and refused == {}
    assert halted == {"VTI": "the price of VTI moved beyond the window's limits: it would trade at 250.00, "
                             "outside 223.25-246.75"}


def test_slippage_counts_against_the_limits():
    at_the_edge = NetOrder(symbol="VTI", side=Side.BUY, notional="100.00", min_price="240", max_price="250.00")
    assert domain.execute([at_the_edge], QUOTES)[0][0].price == D("250.00")
    executions, halted, _ = domain.execute([at_the_edge], QUOTES, slippage_bps=1)
    assert executions == [] and "250.025000" in halted["VTI"]


def test_an_order_has_both_limits_or_neither_and_in_order():
    with pytest.raises(ValueError, match="both price limits"):
        NetOrder(symbol="VTI", side=Side.BUY, notional="1.00", min_price="1")
    with pytest.raises(ValueError, match="above max_price"):
        NetOrder(symbol="VTI", side=Side.BUY, notional="1.00", min_price="2", max_price="1")


def test_a_seven_percent_fall_halts_the_market_fifteen_minutes():
    now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 10:00 New York
    breaker = domain.circuit_breaker(D("93"), D("100"), now, [])
    assert (breaker.level, breaker.until) == (1, datetime(2026, 11, 25, 15, 15, tzinfo=UTC))


def test_a_thirteen_percent_fall_trips_level_two_once_a_day():
    now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert domain.circuit_breaker(D("87"), D("100"), now, []).level == 2
    assert domain.circuit_breaker(D("87"), D("100"), now, [1, 2]) is None


def test_levels_one_and_two_do_not_halt_at_or_after_1525():
    late = datetime(2026, 11, 25, 20, 25, tzinfo=UTC)  # 15:25 New York
    breaker = domain.circuit_breaker(D("86"), D("100"), late, [])
    assert breaker.level == 2 and breaker.until == late


def test_a_twenty_percent_fall_halts_for_the_rest_of_the_day():
    late = datetime(2026, 11, 25, 20, 30, tzinfo=UTC)
    breaker = domain.circuit_breaker(D("80"), D("100"), late, [1, 2])
    assert (breaker.level, breaker.until) == (3, datetime(2026, 11, 26, 5, 0, tzinfo=UTC))  # midnight New York


def test_a_small_fall_trips_nothing():
    assert domain.circuit_breaker(D("93.01"), D("100"), datetime(2026, 11, 25, 15, tzinfo=UTC), []) is None


def test_an_order_with_shares_trades_the_whole_net_on_its_side():
    order = NetOrder(symbol="VTI", side=Side.BUY, notional=Decimal("100.00"), shares=Decimal("-3"))
    assert domain.direction(order, Decimal("50")) is Side.SELL  # 2 bought by dollars, 3 sold
    assert domain.fill(order, Decimal("50")) == Execution(symbol="VTI", side=Side.SELL, quantity=Decimal("1"),
                                                         price=Decimal("50"), amount=Decimal("50.00"))
    executions, _, _ = domain.execute([order], {"VTI": domain.Quote("VTI", Decimal("50"), True)}, slippage_bps=100)
    assert executions[0].side is Side.SELL and executions[0].price == Decimal("49.5")  # slipped against a sell


def test_slippage_is_set_within_the_windows_price_margin():
    """Beyond 500 basis points slippage alone would take every order with price limits
    outside them: such an order would never trade."""
    assert Settings(market_slippage_bps=500).market_slippage_bps == 500
    for bad in (501, -1):
        with pytest.raises(ValidationError, match="market_slippage_bps"):
            Settings(market_slippage_bps=bad)


@pytest.mark.parametrize(("price", "reason"), [
    ("12.3456789", "at most 6 decimal places allowed, got 7"),
    ("0", "must be positive"),
    ("1e3", "not a plain decimal string: '1e3'"),
])
def test_a_bad_price_in_a_price_list_names_its_line_and_the_reason(price, reason):
    with pytest.raises(ValueError) as exc:
        domain.parse_price_list(f"symbol,price,name\nVTI,100.00,Total\nBND,{price},Bonds\n")
    assert str(exc.value) == f"price list line 3: {reason}"
