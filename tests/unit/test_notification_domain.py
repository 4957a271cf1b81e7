"""What the holder reads for each event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from services.notification import domain
from shared.contracts import (
    AccountFills,
    DepositBooked,
    Fill,
    FillsBooked,
    FundingRejected,
    IntentsRejected,
    WithdrawalBooked,
)

D = Decimal
AT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
WINDOW = uuid.UUID("1a2b3c4d-0000-4000-8000-000000000001")


def fill(symbol: str, side: str, quantity: str, amount: str, price: str, account: str = "acc-1") -> Fill:
    return Fill(intent_id=uuid.uuid4(), account_id=account, symbol=symbol, side=side, quantity=D(quantity),
                amount=D(amount), price=D(price))


def test_a_booked_deposit_reads_deposit_received():
    note = domain.deposit_received(DepositBooked(account_id="acc-1", deposit_id=uuid.uuid4(), amount=D("100.00"),
                                                 cash=D("100.00"), booked_at=AT))
    assert (note.account_id, note.kind, note.message) == ("acc-1", "deposit_received", "Deposit of $100.00 received.")
    assert note.data["amount"] == "100.00" and note.data["cash"] == "100.00"


def test_large_amounts_carry_thousands_separators():
    assert domain.dollars(D("1234567.89")) == "$1,234,567.89"


def test_a_negative_amount_puts_the_sign_before_the_dollar():
    assert domain.dollars(D("-5.00")) == "-$5.00"


def test_a_booked_withdrawal_reads_sent_to_your_bank():
    note = domain.withdrawal_completed(WithdrawalBooked(account_id="acc-1", withdrawal_id=uuid.uuid4(),
                                                        amount=D("50.00"), cash=D("50.00"), booked_at=AT))
    assert (note.kind, note.message) == ("withdrawal_completed", "Withdrawal of $50.00 sent to your bank.")


def test_a_refused_deposit_tells_the_reason():
    note = domain.funding_rejected(FundingRejected(account_id="acc-1", funding_type="deposit", funding_id="d-1",
                                                   amount="1.005", reason="amount: at most 2 decimal places allowed"))
    assert note.kind == "funding_rejected"
    assert note.message == "Your deposit was refused: amount: at most 2 decimal places allowed"
    assert note.data == {"funding_type": "deposit", "funding_id": "d-1", "amount": "1.005",
                         "reason": "amount: at most 2 decimal places allowed"}


def test_a_refused_withdrawal_tells_the_reason():
    note = domain.funding_rejected(FundingRejected(account_id="acc-1", funding_type="withdrawal",
                                                   reason="insufficient cash: requested 40.01, available 40.00"))
    assert note.message == "Your withdrawal was refused: insufficient cash: requested 40.01, available 40.00"


def test_a_refusal_of_another_funding_kind_is_called_a_funding_request():
    note = domain.funding_rejected(FundingRejected(account_id="acc-1", funding_type="funding", reason="bad"))
    assert note.message == "Your funding request was refused: bad"


def test_booked_fills_list_every_trade_of_the_window():
    note = domain.trades_executed(AccountFills(
        account_id="acc-1", window_id=WINDOW, cash=D("0.00"), positions={}, version=3, booked_at=AT,
        fills=[fill("VTI", "buy", "0.23718", "60.00", "252.97"), fill("BND", "sell", "1.50000", "108.75", "72.5")],
    ))
    assert note.kind == "trades_executed"
    assert note.message == ("Trades executed in window 1a2b3c4d: bought 0.23718 VTI for $60.00 at $252.97; "
                            "sold 1.50000 BND for $108.75 at $72.50.")
    assert [f["symbol"] for f in note.data["fills"]] == ["VTI", "BND"] and note.data["window_id"] == str(WINDOW)


def test_a_price_keeps_its_significant_decimals():
    assert domain.price(D("60.123400")) == "$60.1234"
    assert domain.price(D("1250")) == "$1,250.00"


def test_the_data_is_plain_json():
    note = domain.trades_executed(AccountFills(account_id="acc-1", window_id=WINDOW, cash=D("0.00"), positions={},
                                               version=1, booked_at=AT, fills=[fill("VTI", "buy", "1", "2.00", "2")]))
    assert json.loads(json.dumps(note.data)) == note.data


def test_a_fills_batch_tells_each_account_its_own_trades_in_the_batchs_order():
    parts = [AccountFills(account_id=account, window_id=WINDOW, cash=D(cash), positions={}, version=2, booked_at=AT,
                          fills=[fill("VTI", "buy", quantity, amount, "250", account)])
             for account, quantity, amount, cash in (("acc-1", "0.24000", "60.00", "40.00"),
                                                     ("acc-2", "0.40000", "100.00", "0.00"))]
    notes = domain.fills_booked(FillsBooked(window_id=WINDOW, batch=0, booked_at=AT, accounts=parts))
    assert [(n.account_id, n.kind, n.message) for n in notes] == [
        ("acc-1", "trades_executed", "Trades executed in window 1a2b3c4d: bought 0.24000 VTI for $60.00 at $250.00."),
        ("acc-2", "trades_executed", "Trades executed in window 1a2b3c4d: bought 0.40000 VTI for $100.00 at $250.00."),
    ]
    assert notes == [domain.trades_executed(p) for p in parts]
    assert (notes[0].data["cash"], notes[1].data["cash"]) == ("40.00", "0.00")
    assert domain.fills_booked(FillsBooked(window_id=WINDOW, batch=1, booked_at=AT, accounts=[])) == []


def test_rejected_trades_tell_the_holder_why():
    event = IntentsRejected(account_id="a", window_id=uuid.UUID(int=1),
                            reasons={str(uuid.UUID(int=2)): "insufficient cash: under $1"})
    note = domain.intents_rejected(event)
    assert note.kind == domain.INTENTS_REJECTED
    assert note.message == "1 trade not placed in window 00000000: insufficient cash: under $1."
