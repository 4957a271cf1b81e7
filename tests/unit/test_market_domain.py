"""The venue simulator's rules, without I/O."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.market import domain
from services.market.domain import Quote, Refusal
from shared.contracts import NetOrder, Side

D = Decimal
SAMPLE = Path(__file__).parents[2] / "services" / "market" / "data" / "prices.csv"


def order(symbol: str, notional: str, side: Side = Side.BUY) -> NetOrder:
    return NetOrder(symbol=symbol, side=side, notional=notional)


QUOTES = {"VTI": Quote("VTI", D("250.00"), True), "BND": Quote("BND", D("72.50"), True),
          "OLD": Quote("OLD", D("10.00"), False)}


def test_a_buy_gets_the_shares_its_notional_buys_rounded_down():
    [e] = domain.execute([order("BND", "400.00")], QUOTES)
    assert (e.symbol, e.side, e.quantity, e.price) == ("BND", Side.BUY, D("5.51724"), D("72.50"))
    assert e.amount == D("400.00")  # 5.51724 x 72.50 = 399.9999 -> to the cent


def test_the_amount_is_the_filled_shares_times_the_price_to_the_cent():
    [e] = domain.execute([order("VGT", "322.00")], {"VGT": Quote("VGT", D("620.15"), True)})
    assert (e.quantity, e.amount) == (D("0.51922"), D("321.99"))  # 321.994283 -> 321.99


def test_a_sell_is_filled_the_same_way():
    [e] = domain.execute([order("VTI", "125.00", Side.SELL)], QUOTES)
    assert (e.side, e.quantity, e.amount) == (Side.SELL, D("0.50000"), D("125.00"))


def test_a_zero_order_fills_nothing_but_reports_the_price():
    [e] = domain.execute([order("VTI", "0.00")], QUOTES)
    assert (e.quantity, e.amount, e.price) == (D("0"), D("0"), D("250.00"))


def test_an_unknown_symbol_refuses_the_whole_window_with_the_reason():
    with pytest.raises(Refusal, match="unknown symbol NOPE"):
        domain.execute([order("VTI", "10.00"), order("NOPE", "10.00")], QUOTES)


def test_an_inactive_symbol_is_not_traded():
    with pytest.raises(Refusal, match="OLD is inactive"):
        domain.execute([order("OLD", "10.00")], QUOTES)


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
