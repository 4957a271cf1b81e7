"""A liquidation's own sells (services/margin/domain.py ``settle_liquidations``): which booked
sells are a liquidation's, when its call closes, and what its proceeds repay."""

from __future__ import annotations

import uuid
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.margin import domain
from services.margin.domain import Liquidation, SellBooked

D = Decimal
CALL, BATCH, WINDOW, LATER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def liquidating(**kw) -> Liquidation:
    """The review's call: $32.00 due, $112.00 to sell; the pie planned it in BATCH."""
    return Liquidation(**{"call_id": CALL, "liquidating": True, "amount": D("112.00"), "planned": D("112.00"),
                          "batch_id": BATCH, "known": True, **kw})


def sell(amount: str, batch: uuid.UUID | None = None, window: uuid.UUID = WINDOW) -> SellBooked:
    return SellBooked(window, uuid.uuid4(), D(amount), batch)


def test_an_unrelated_sell_neither_closes_the_liquidation_nor_repays_the_loan():
    settlements, keep = domain.settle_liquidations([liquidating()], [sell("2.00")], D("1600.00"))
    assert settlements == [] and not keep  # the call stays liquidating; the sell is forgotten


def test_the_liquidations_own_sells_close_the_call_and_repay_the_loan_unrelated_ones_beside_them_do_not():
    own = sell("112.00", BATCH)
    (s,), keep = domain.settle_liquidations([liquidating()], [sell("2.00"), own], D("1600.00"))
    assert (s.call_id, s.sells, s.proceeds, s.repay, s.closes) == (CALL, (own,), D("112.00"), D("112.00"), True)
    assert not keep


def test_sells_booked_before_the_pie_named_the_liquidations_own_are_kept_until_it_does():
    for before in (liquidating(planned=None, batch_id=None, known=False), liquidating(known=False)):
        settlements, keep = domain.settle_liquidations([before], [sell("112.00")], D("1600.00"))
        assert settlements == [] and keep


def test_a_liquidation_the_pie_had_nothing_to_sell_for_closes_with_nothing_raised():
    (s,), keep = domain.settle_liquidations([liquidating(planned=D("0.00"), batch_id=None, known=False)], [sell("2")],
                                            D("1600.00"))
    assert (s.proceeds, s.repay, s.closes, s.sells) == (D("0.00"), D("0.00"), True, ()) and not keep


def test_a_liquidation_whose_every_sell_the_window_rejected_closes_with_nothing_raised():
    (s,), keep = domain.settle_liquidations([liquidating(rejected=True)], [sell("2.00")], D("1600.00"))
    assert (s.call_id, s.proceeds, s.repay, s.closes, s.sells) == (CALL, D("0.00"), D("0.00"), True, ()) and not keep
    # some of its sells still to fill (carried over, not rejected): it waits for them
    assert domain.settle_liquidations([liquidating()], [], D("1600.00")) == ([], False)


def test_a_liquidation_halted_in_part_closes_on_its_first_sells_and_its_carried_over_sells_repay_later():
    (first,), _ = domain.settle_liquidations([liquidating()], [sell("56.00", BATCH)], D("1600.00"))
    assert (first.proceeds, first.repay, first.closes) == (D("56.00"), D("56.00"), True)
    closed = liquidating(liquidating=False, raised=D("56.00"))
    (later,), keep = domain.settle_liquidations([closed], [sell("60.00", BATCH, LATER)], D("1544.00"))
    # the carried-over sell raised 60.00 at its later price: it repays what is left of the 112.00
    assert (later.proceeds, later.raised_before, later.repay, later.closes) == (D("60.00"), D("56.00"), D("56.00"),
                                                                              False)
    assert not keep


def test_the_repayment_is_never_more_than_the_loan():
    (s,), _ = domain.settle_liquidations([liquidating()], [sell("112.00", BATCH)], D("40.00"))
    assert (s.repay, s.closes) == (D("40.00"), True)


def test_a_liquidation_from_before_the_pies_answer_was_kept_takes_the_accounts_next_sells():
    legacy = liquidating(planned=None, batch_id=None, known=False, legacy=True)
    (s,), keep = domain.settle_liquidations([legacy], [sell("2.00")], D("1600.00"))
    assert (s.proceeds, s.repay, s.closes) == (D("2.00"), D("2.00"), True) and not keep


money = st.decimals(min_value=D("0.00"), max_value=D("100000.00"), places=2)


@given(amount=money, raised=money, proceeds=money, loan=money)
def test_a_repayment_is_the_proceeds_up_to_what_is_left_of_the_liquidation_and_the_loan(amount, raised, proceeds,
                                                                                        loan):
    repay = domain.liquidation_repayment(amount, raised, proceeds, loan)
    assert D("0.00") <= repay <= min(proceeds, loan)
    assert raised + repay <= max(amount, raised)
    assert repay == proceeds or repay == loan or raised + repay == amount or repay == 0
