"""What the holder is told about margin: loans drawn and repaid, calls issued, met and
liquidated (rendering is pure; ``register`` subscribes the renderers)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from services.notification.domain import Notification, dollars
from shared import topology
from shared.contracts import LoanChanged, MarginCallIssued, MarginCallLiquidated, MarginCallMet
from shared.service import Service

LOAN_DRAWN = "margin_loan_drawn"
LOAN_REPAID = "margin_loan_repaid"
CALL_ISSUED = "margin_call_issued"
CALL_MET = "margin_call_met"
CALL_LIQUIDATED = "margin_call_liquidated"
NEW_YORK = ZoneInfo("America/New_York")


def when(moment: datetime) -> str:
    """``Tue 1 Dec 2026 16:00 New York time``."""
    local = moment.astimezone(NEW_YORK)
    return f"{local:%a} {local.day} {local:%b %Y %H:%M} New York time"


def loan_changed(event: LoanChanged) -> Notification:
    data = event.model_dump(mode="json", include={"loan", "delta", "cash", "cause", "cause_id", "booked_at"})
    if event.cause == "loan":
        return Notification(event.account_id, LOAN_DRAWN,
                            f"Margin loan of {dollars(event.delta)} added to your cash; you now owe "
                            f"{dollars(event.loan)}.", data)
    rest = f"you now owe {dollars(event.loan)}" if event.loan > 0 else "your margin loan is fully repaid"
    return Notification(event.account_id, LOAN_REPAID,
                        f"Margin loan repayment of {dollars(-event.delta)} from your cash; {rest}.", data)


def call_issued(event: MarginCallIssued) -> Notification:
    return Notification(
        event.account_id, CALL_ISSUED,
        f"Margin call: your equity of {dollars(event.equity)} is below the maintenance requirement of "
        f"{dollars(event.requirement)}. Deposit {dollars(event.amount_due)} (or repay the loan) by "
        f"{when(event.deadline)}, or holdings will be sold to repay the loan.",
        event.model_dump(mode="json", include={"call_id", "amount_due", "market_value", "equity", "requirement",
                                               "loan", "deadline"}))


def call_met(event: MarginCallMet) -> Notification:
    return Notification(
        event.account_id, CALL_MET,
        f"Margin call met: your equity of {dollars(event.equity)} covers the maintenance requirement of "
        f"{dollars(event.requirement)}.",
        event.model_dump(mode="json", include={"call_id", "equity", "requirement", "met_at"}))


def call_liquidated(event: MarginCallLiquidated) -> Notification:
    why = ("the margin call was not met by its deadline" if event.reason == "deadline"
           else "your equity fell below the minimum")
    return Notification(
        event.account_id, CALL_LIQUIDATED,
        f"Holdings worth {dollars(event.amount)} will be sold in the next trade window because {why}; "
        f"the proceeds repay your margin loan.",
        event.model_dump(mode="json", include={"call_id", "amount", "shortfall", "reason", "liquidated_at"}))


def register(service: Service, notifier) -> None:
    """Subscribe the renderers; ``notifier(render)`` is the notification handlers' wrapper
    that stores and delivers what a renderer returns."""
    for model, render in ((LoanChanged, loan_changed), (MarginCallIssued, call_issued),
                          (MarginCallMet, call_met), (MarginCallLiquidated, call_liquidated)):
        service.handler(topology.NOTIFICATION_MARGIN, model)(notifier(render))
