"""What the holder is told about each event: a short message and the structured facts. Pure."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.contracts import (
    AccountFills,
    DepositBooked,
    Fill,
    FillsBooked,
    FundingRejected,
    IntentsCarriedOver,
    IntentsRejected,
    OrderChanged,
    OrderRefused,
    OrderState,
    Side,
    WithdrawalBooked,
)

DEPOSIT_RECEIVED = "deposit_received"
WITHDRAWAL_COMPLETED = "withdrawal_completed"
FUNDING_REJECTED = "funding_rejected"
TRADES_EXECUTED = "trades_executed"
INTENTS_REJECTED = "intents_rejected"
INTENTS_CARRIED_OVER = "intents_carried_over"
ORDER_REFUSED = "order_refused"
# An order's changes the holder is told about, by OrderChanged.change; the others (funded:
# its deposit was booked, which the deposit's own notification says; cancel_requested: the
# answer follows) are not notified.
ORDER_KINDS = {"placed": "order_placed", "cancel_refused": "order_cancel_refused", "cancelled": "order_cancelled",
               "carried_over": "order_carried_over", "executed": "order_executed",
               "partially_executed": "order_partially_executed", "rejected": "order_rejected"}


@dataclass(frozen=True)
class Notification:
    account_id: str
    kind: str
    message: str
    data: dict[str, Any]


def dollars(amount: Decimal) -> str:
    """``$1,234.50``; a negative amount as ``-$5.00``. Amounts arrive in whole cents."""
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def price(value: Decimal) -> str:
    """A price with at least 2 and at most its own decimals: ``$252.97``, ``$60.1234``."""
    text = format(value.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"${int(whole):,}.{frac.ljust(2, '0')}"


def deposit_received(event: DepositBooked) -> Notification:
    return Notification(event.account_id, DEPOSIT_RECEIVED, f"Deposit of {dollars(event.amount)} received.",
                        event.model_dump(mode="json", include={"deposit_id", "amount", "cash", "booked_at"}))


def withdrawal_completed(event: WithdrawalBooked) -> Notification:
    return Notification(event.account_id, WITHDRAWAL_COMPLETED,
                        f"Withdrawal of {dollars(event.amount)} sent to your bank.",
                        event.model_dump(mode="json", include={"withdrawal_id", "amount", "cash", "booked_at"}))


_FUNDING_NAMES = {"deposit": "deposit", "withdrawal": "withdrawal"}


def funding_rejected(event: FundingRejected) -> Notification:
    what = _FUNDING_NAMES.get(event.funding_type, "funding request")
    return Notification(event.account_id, FUNDING_REJECTED, f"Your {what} was refused: {event.reason}",
                        event.model_dump(mode="json", include={"funding_type", "funding_id", "amount", "reason"}))


def _trade(fill: Fill) -> str:
    verb = "bought" if fill.side is Side.BUY else "sold"
    return f"{verb} {format(fill.quantity, 'f')} {fill.symbol} for {dollars(fill.amount)} at {price(fill.price)}"


def trades_executed(part: AccountFills) -> Notification:
    trades = "; ".join(_trade(f) for f in part.fills) or "nothing for this account"
    return Notification(part.account_id, TRADES_EXECUTED,
                        f"Trades executed in window {str(part.window_id)[:8]}: {trades}.",
                        part.model_dump(mode="json", include={"window_id", "fills", "cash", "booked_at"}))


def fills_booked(event: FillsBooked) -> list[Notification]:
    """A booked fills batch: one ``trades_executed`` per account, in the batch's order."""
    return [trades_executed(part) for part in event.accounts]


def intents_rejected(event: IntentsRejected) -> Notification:
    reasons = sorted(set(event.reasons.values()))
    n = len(event.reasons)
    return Notification(event.account_id, INTENTS_REJECTED,
                        f"{n} trade{'s' if n != 1 else ''} not placed in window {str(event.window_id)[:8]}: "
                        + "; ".join(reasons) + ".",
                        event.model_dump(mode="json", include={"window_id", "reasons"}))


def intents_carried_over(event: IntentsCarriedOver) -> Notification:
    return Notification(event.account_id, INTENTS_CARRIED_OVER,
                        f"Trades in {', '.join(event.symbols)} wait for the next window: {event.reason}.",
                        event.model_dump(mode="json", include={"window_id", "symbols", "intents", "reason"}))


def _order_words(order: OrderState) -> str:
    """``buy $100.00 of VTI``, ``sell 1.5 shares of BND``."""
    if order.amount is not None:
        return f"{order.side.value} {dollars(order.amount)} of {order.symbol}"
    return f"{order.side.value} {format(order.quantity.normalize(), 'f')} shares of {order.symbol}"


def order_changed(event: OrderChanged) -> Notification | None:
    """One notification per change of an order the holder cares about (None for the others)."""
    kind = ORDER_KINDS.get(event.change)
    if kind is None:
        return None
    o = event.order
    name, what = f"Order {str(o.order_id)[:8]}", _order_words(o)
    if event.change == "placed":
        text = f"{name} placed: {what} in the next trade window."
        if o.waiting_for is not None:
            text = f"{name} placed: {what}; it waits for your deposit of {dollars(o.deposit_amount)}."
    elif event.change == "cancel_refused":
        text = f"{name} ({what}) could not be cancelled: {(o.reason or '').removeprefix('not cancelled: ')}."
    elif event.change == "cancelled":
        text = f"{name} cancelled: {what}."
    elif event.change == "carried_over":
        text = f"{name} ({what}) waits for the next window: {o.reason}."
    elif event.change in ("executed", "partially_executed"):
        verb = "bought" if o.side is Side.BUY else "sold"
        traded = (f"{verb} {format(o.filled_quantity, 'f')} {o.symbol} for {dollars(o.filled_amount)} "
                  f"at {price(o.price)}")
        text = (f"{name} executed: {traded}." if event.change == "executed"
                else f"{name} partially executed ({what}): {traded}; {o.reason}.")
    else:
        text = f"{name} rejected ({what}): {o.reason}."
    data = {"change": event.change, **o.model_dump(mode="json")}
    return Notification(event.account_id, kind, text, data)


def order_refused(event: OrderRefused) -> Notification:
    return Notification(event.account_id, ORDER_REFUSED, f"Your {event.request} was refused: {event.reason}",
                        event.model_dump(mode="json", include={"request", "reason"}))


# ---------------------------------------------------------------- delivery channels

SIGNATURE_HEADER = "X-M1-Signature"
TIMESTAMP_HEADER = "X-M1-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The webhook signature: ``sha256=`` + hex HMAC-SHA256, keyed by the account's secret,
    of ``<timestamp>.<body>`` (the unix seconds of the timestamp header, a dot, the exact
    bytes posted). Signing the timestamp too lets a receiver refuse an old, replayed body."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signature_valid(secret: str, timestamp: int, body: bytes, header: str) -> bool:
    """What a receiver checks (in constant time)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base, 2 base, 4 base, ...,
    never more than ``cap``."""
    if attempts < 1:
        raise ValueError("attempts count from 1")
    return min(cap, base * 2 ** min(attempts - 1, 62))


def after_failure(attempts: int, max_attempts: int, base: float, cap: float) -> float | None:
    """Seconds until the next attempt, or None when the delivery has used its attempts."""
    return None if attempts >= max_attempts else retry_delay(attempts, base, cap)


def webhook_body(delivery_id: str, entry: dict[str, Any]) -> bytes:
    """The JSON posted to a webhook: the feed entry plus the delivery id, compact, in a
    stable key order (the signature covers these exact bytes)."""
    return json.dumps({"delivery_id": delivery_id, **entry}, separators=(",", ":"), sort_keys=True,
                      default=str).encode()


def email_subject(kind: str) -> str:
    return "M1: " + kind.replace("_", " ")
