"""Notification subscribers: render each user-facing event, store it once, deliver it."""

from __future__ import annotations

import json
import logging

from services.notification import domain, store
from shared import topology
from shared.contracts import (
    DepositBooked,
    Feed,
    FeedEntry,
    FillsBooked,
    FundingRejected,
    GetFeed,
    IntentsCarriedOver,
    IntentsRejected,
    WithdrawalBooked,
)
from shared.messaging import Tx
from shared.service import Service

# The log delivery channel: one INFO line per new notification (its message is the text the
# holder reads; account_id and kind ride along). On whatever the service's log level.
deliveries = logging.getLogger("m1.notification.deliveries")


async def notify(tx: Tx, note: domain.Notification) -> None:
    """Store the notification, keyed by the causing message's id, and deliver it if new."""
    feed_id = await store.add(tx.conn, note.account_id, note.kind, note.message, json.dumps(note.data),
                              tx.message_id, tx.now)
    if feed_id is not None:
        deliveries.info(note.message, extra={"account_id": note.account_id, "kind": note.kind, "feed_id": feed_id,
                                             "cause_id": tx.message_id, "correlation_id": tx.correlation_id})


def register(service: Service) -> None:
    on = service.handler
    deliveries.setLevel(logging.INFO)

    @on(topology.NOTIFICATION_EVENTS, DepositBooked)
    async def deposit_booked(tx: Tx, event: DepositBooked) -> None:
        await notify(tx, domain.deposit_received(event))

    @on(topology.NOTIFICATION_EVENTS, WithdrawalBooked)
    async def withdrawal_booked(tx: Tx, event: WithdrawalBooked) -> None:
        await notify(tx, domain.withdrawal_completed(event))

    @on(topology.NOTIFICATION_EVENTS, FundingRejected)
    async def funding_rejected(tx: Tx, event: FundingRejected) -> None:
        await notify(tx, domain.funding_rejected(event))

    @on(topology.NOTIFICATION_EVENTS, FillsBooked)
    async def fills_booked(tx: Tx, event: FillsBooked) -> None:
        await notify(tx, domain.trades_executed(event))

    @on(topology.NOTIFICATION_WINDOW, IntentsRejected)
    async def intents_rejected(tx: Tx, event: IntentsRejected) -> None:
        await notify(tx, domain.intents_rejected(event))

    @on(topology.NOTIFICATION_WINDOW, IntentsCarriedOver)
    async def intents_carried_over(tx: Tx, event: IntentsCarriedOver) -> None:
        await notify(tx, domain.intents_carried_over(event))

    @on(topology.NOTIFICATION_COMMANDS, GetFeed, idempotent=False)
    async def get_feed(tx: Tx, query: GetFeed) -> Feed:
        rows = await store.feed(tx.conn, query.account_id, query.since, query.limit)
        return Feed(account_id=query.account_id,
                    entries=[FeedEntry(**{**dict(r), "data": json.loads(r["data"])}) for r in rows])
