"""The webhook signature and the retry schedule: pure functions."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notification import domain

SECRET = "whsec-0123456789abcdef"


def test_the_signature_is_hex_hmac_sha256_of_timestamp_dot_body():
    body = b'{"message":"Deposit of $100.00 received."}'
    expected = hmac.new(SECRET.encode(), b"1764079200." + body, hashlib.sha256).hexdigest()
    assert domain.signature(SECRET, 1764079200, body) == "sha256=" + expected


def test_a_known_vector_stays_stable():
    assert domain.signature("key", 1, b"{}") == (
        "sha256=" + hmac.new(b"key", b"1.{}", hashlib.sha256).hexdigest())


def test_a_receiver_accepts_the_right_signature_only():
    body = b'{"a":1}'
    header = domain.signature(SECRET, 100, body)
    assert domain.signature_valid(SECRET, 100, body, header)
    assert not domain.signature_valid(SECRET, 101, body, header)  # another timestamp
    assert not domain.signature_valid(SECRET, 100, b'{"a":2}', header)  # another body
    assert not domain.signature_valid("other-secret-000000", 100, body, header)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.integers(min_value=0, max_value=2**40), st.text(min_size=1, max_size=64))
def test_any_change_to_the_body_breaks_the_signature(body, timestamp, secret):
    header = domain.signature(secret, timestamp, body)
    assert domain.signature_valid(secret, timestamp, body, header)
    assert not domain.signature_valid(secret, timestamp, body + b" ", header)


def test_the_webhook_body_is_compact_sorted_json_with_the_delivery_id():
    body = domain.webhook_body("d-1", {"message": "hi", "data": {"b": "2", "a": "1"}, "id": 7})
    assert body == b'{"data":{"a":"1","b":"2"},"delivery_id":"d-1","id":7,"message":"hi"}'
    assert json.loads(body)["delivery_id"] == "d-1"


def test_retries_back_off_exponentially_from_the_base():
    assert [domain.retry_delay(n, 2.0, 3600.0) for n in range(1, 8)] == [2, 4, 8, 16, 32, 64, 128]


def test_the_backoff_never_exceeds_its_cap():
    assert domain.retry_delay(20, 2.0, 3600.0) == 3600.0
    assert domain.retry_delay(10_000, 2.0, 60.0) == 60.0


def test_attempts_count_from_one():
    with pytest.raises(ValueError):
        domain.retry_delay(0, 1.0, 10.0)


def test_a_delivery_that_used_its_attempts_gets_no_further_retry():
    assert domain.after_failure(2, 3, 1.0, 60.0) == 2.0
    assert domain.after_failure(3, 3, 1.0, 60.0) is None
    assert domain.after_failure(9, 3, 1.0, 60.0) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0.01, max_value=100),
       st.floats(min_value=0.01, max_value=100_000))
def test_the_backoff_grows_and_stays_within_base_and_cap(attempts, base, cap):
    delay = domain.retry_delay(attempts, base, cap)
    assert min(base, cap) <= delay <= cap
    assert domain.retry_delay(attempts + 1, base, cap) >= delay


def test_the_email_subject_names_the_kind():
    assert domain.email_subject("trades_executed") == "M1: trades executed"
