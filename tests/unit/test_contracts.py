"""The fixed funding contract and the money types every message uses."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from m1.client import explain
from shared.contracts import BY_TYPE, DepositReceived, Intent, PieSpec, WithdrawalRequested, _decimal
from shared.messaging import validation_errors

GOOD = {"deposit_id": "6f0c0b9e-1c1e-4b1e-9a43-0d6f3c2b8a11", "account_id": "alice_01-x", "amount": "123.45",
        "currency": "USD", "received_at": "2026-11-25T09:15:00-05:00"}


def test_a_deposit_in_the_fixed_shape_is_accepted_and_round_trips_money_as_a_string():
    event = DepositReceived.model_validate(GOOD)
    assert event.amount == Decimal("123.45")
    assert '"amount":"123.45"' in event.model_dump_json()


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("amount", "0.00", "positive"),
    ("amount", "-1.00", "positive"),
    ("amount", "1.005", "at most 2 decimal places"),
    ("amount", "1000000000.01", "at most 1000000000.00"),
    ("amount", 12.5, "decimal string"),
    ("amount", "1e3", "plain decimal"),
    ("currency", "EUR", "USD"),
    ("account_id", "", "pattern"),
    ("account_id", "a" * 65, "pattern"),
    ("account_id", "bad id!", "pattern"),
    ("received_at", "2026-11-25T09:15:00", "timezone"),
    ("deposit_id", "not-a-uuid", "UUID"),
])
def test_a_deposit_breaking_the_contract_is_refused_with_the_reason(field, value, reason):
    with pytest.raises(ValidationError) as exc:
        DepositReceived.model_validate({**GOOD, field: value})
    assert reason.lower() in str(exc.value).lower()


def test_missing_and_unknown_fields_are_refused():
    with pytest.raises(ValidationError):
        DepositReceived.model_validate({k: v for k, v in GOOD.items() if k != "amount"})
    with pytest.raises(ValidationError):
        DepositReceived.model_validate({**GOOD, "memo": "hi"})


def test_the_largest_allowed_amount_is_accepted():
    assert DepositReceived.model_validate({**GOOD, "amount": "1000000000.00"}).amount == Decimal("1000000000.00")


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000000.00"), places=2))
def test_every_positive_two_decimal_amount_survives_a_round_trip_exactly(amount):
    body = {"withdrawal_id": GOOD["deposit_id"], "account_id": "a", "amount": format(amount, "f"),
            "currency": "USD", "requested_at": "2026-11-25T09:15:00+00:00"}
    event = WithdrawalRequested.model_validate(body)
    assert WithdrawalRequested.model_validate_json(event.model_dump_json()).amount == amount


def test_an_intent_has_either_an_amount_or_a_quantity():
    base = {"intent_id": GOOD["deposit_id"], "account_id": "a", "symbol": "VTI", "side": "buy",
            "source": "auto_invest"}
    assert Intent.model_validate({**base, "amount": "5.00"}).quantity is None
    with pytest.raises(ValidationError):
        Intent.model_validate(base)
    with pytest.raises(ValidationError):
        Intent.model_validate({**base, "amount": "5.00", "quantity": "1.00000"})


def test_a_slice_is_a_symbol_or_a_pie_never_both():
    with pytest.raises(ValidationError):
        PieSpec.model_validate({"name": "x", "slices": [{"target": 100}]})
    nested = PieSpec.model_validate({"name": "x", "slices": [
        {"target": 100, "pie": {"name": "y", "slices": [{"target": 100, "symbol": "VTI"}]}}]})
    assert nested.slices[0].pie.slices[0].symbol == "VTI"


def test_every_contract_has_a_unique_routing_key_named_producer_thing_event():
    from shared.contracts import ALL_MESSAGES

    assert len(BY_TYPE) == len(ALL_MESSAGES)
    for key in BY_TYPE:
        assert len(key.split(".")) == 3, key


# A decimal field is checked in pydantic-core when the value is a well-formed decimal string,
# by our parser otherwise (shared/contracts.py ``_decimal``): both must take and refuse the
# same values, and a refusal must give our parser's reason alone.
_PARSER = _decimal(2, positive=True, maximum=Decimal("1000000000.00"))[0]


def _checked(value):
    """What our parser alone says of ``value``: the Decimal, or the reason it refuses."""
    schema = _PARSER.get_pydantic_core_schema(None, None)
    for choice, tag in schema["choices"]:
        if tag == "decimal":
            try:
                return choice["function"]["function"](value)
            except ValueError as exc:
                return str(exc)
    raise AssertionError("no checked way")


def _read_as_the_parser_says(text: str) -> None:
    expected = _checked(text)
    try:
        got = DepositReceived.model_validate_json(json.dumps({**GOOD, "amount": text})).amount
    except ValidationError as exc:
        assert validation_errors(exc) == [f"amount: {expected}"]
    else:
        assert got == expected and isinstance(expected, Decimal)


@given(st.text(alphabet="0123456789.- e", max_size=14))
def test_the_fast_way_and_the_parser_take_and_refuse_the_same_decimal_strings(text):
    _read_as_the_parser_says(text)


@given(st.decimals(min_value=Decimal("-1000"), max_value=Decimal("2000000000"), places=2, allow_nan=False))
def test_every_two_decimal_string_is_taken_or_refused_as_the_parser_says(amount):
    _read_as_the_parser_says(format(amount, "f"))


@pytest.mark.parametrize(("value", "reason"), [
    ("1.005", "amount: at most 2 decimal places allowed, got 3"),
    ("0.00", "amount: must be positive"),
    ("1000000000.01", "amount: must be at most 1000000000.00"),
    (12.5, 'amount: must be a decimal string such as "12.34", not a JSON number'),
    ("1e3", "amount: not a plain decimal string: '1e3'"),
])
def test_a_refused_amount_gives_one_reason_the_sender_can_read(value, reason):
    with pytest.raises(ValidationError) as exc:
        DepositReceived.model_validate_json(json.dumps({**GOOD, "amount": value}))
    assert validation_errors(exc.value) == [reason]
    assert explain(exc.value) == reason  # what the CLI prints


def test_a_decimal_field_reads_a_decimal_string_and_writes_one_back():
    event = DepositReceived.model_validate_json(json.dumps({**GOOD, "amount": " 7.50"}))
    assert event.amount == Decimal("7.50") and '"amount":"7.50"' in event.model_dump_json()
    assert DepositReceived.model_json_schema()["properties"]["amount"]["type"] == "string"
