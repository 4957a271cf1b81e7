"""Notification subscribers: render each user-facing event, store it once, deliver it."""

from __future__ import annotations

import json
import logging

from services.notification import domain, store
from services.notification import margin as notification_margin
from services.notification.channels import Delivery, EmailChannel, LogChannel, SmtpSettings, WebhookChannel
from services.notification.delivery import DeliveryWorker
from shared import topology
from shared.contracts import (
    ChannelsView,
    Deliveries,
    DeliveryEntry,
    DepositBooked,
    Feed,
    FeedEntry,
    FillsBooked,
    FundingRejected,
    GetChannels,
    GetDeliveries,
    GetFeed,
    IntentsCarriedOver,
    IntentsRejected,
    OrderChanged,
    OrderRefused,
    ResendDeliveries,
    SetChannels,
    WithdrawalBooked,
)
from shared.messaging import Tx
from shared.service import Service

# The log delivery channel: one INFO line per new notification, written in the handler.
log_channel = LogChannel(logging.getLogger("m1.notification.deliveries"))


async def notify(tx: Tx, note: domain.Notification, cause_id: str | None = None) -> None:
    """Store the notification, keyed by ``cause_id`` (the causing message's id unless given),
    with one pending delivery per channel the account has on (the worker sends them after
    commit); log it if new."""
    cause_id = cause_id or tx.message_id
    feed_id = await store.add(tx.conn, note.account_id, note.kind, note.message, json.dumps(note.data),
                              cause_id, tx.now)
    if feed_id is not None:
        await log_channel.send(Delivery(None, feed_id, note.account_id, note.kind, note.message, note.data,
                                        cause_id, tx.now, extra={"correlation_id": tx.correlation_id}))


def _notifier(render):
    """The handler of a renderer. A renderer returns one notification, None (an event the
    holder is not told about) or a list, one per account of an event about many accounts (a
    booked fills batch); each of a list is keyed by the message id and its account."""

    async def handle(tx: Tx, event) -> None:
        note = render(event)
        if isinstance(note, list):
            for each in note:
                await notify(tx, each, f"{tx.message_id}:{each.account_id}")
        elif note is not None:
            await notify(tx, note)

    handle.__name__ = render.__name__
    return handle


def register(service: Service) -> None:
    on = service.handler
    worker: list[DeliveryWorker] = []

    @service.on_ready
    async def start_deliveries(service: Service) -> None:
        s = service.settings
        channels = {"webhook": WebhookChannel(s.notification_send_timeout),
                    "email": EmailChannel(SmtpSettings.from_settings(s))}
        worker.append(DeliveryWorker(service.pool, channels, s, service.log))
        await worker[0].start()

    @service.on_stop
    async def stop_deliveries(service: Service) -> None:
        while worker:
            await worker.pop().stop()

    # Every user-facing event: its queue, its contract, and the renderer that words it.
    renderers = [
        (topology.NOTIFICATION_EVENTS, DepositBooked, domain.deposit_received),
        (topology.NOTIFICATION_EVENTS, WithdrawalBooked, domain.withdrawal_completed),
        (topology.NOTIFICATION_EVENTS, FundingRejected, domain.funding_rejected),
        (topology.NOTIFICATION_EVENTS, FillsBooked, domain.fills_booked),  # trades_executed per account
        (topology.NOTIFICATION_WINDOW, IntentsRejected, domain.intents_rejected),
        (topology.NOTIFICATION_WINDOW, IntentsCarriedOver, domain.intents_carried_over),
        (topology.NOTIFICATION_ORDERS, OrderChanged, domain.order_changed),
        (topology.NOTIFICATION_ORDERS, OrderRefused, domain.order_refused),
    ]
    for queue, model, render in renderers:
        on(queue, model)(_notifier(render))
    notification_margin.register(service, _notifier)  # margin loans and calls

    @on(topology.NOTIFICATION_COMMANDS, GetFeed, idempotent=False)
    async def get_feed(tx: Tx, query: GetFeed) -> Feed:
        rows = await store.feed(tx.conn, query.account_id, query.since, query.limit)
        return Feed(account_id=query.account_id,
                    entries=[FeedEntry(**{**dict(r), "data": json.loads(r["data"])}) for r in rows])

    @on(topology.NOTIFICATION_COMMANDS, SetChannels)
    async def set_channels(tx: Tx, cmd: SetChannels) -> ChannelsView:
        row = await store.set_channels(tx.conn, cmd.account_id, cmd.webhook_url, cmd.webhook_secret, cmd.email,
                                       tx.now)
        return ChannelsView(**dict(row))

    @on(topology.NOTIFICATION_COMMANDS, GetChannels, idempotent=False)
    async def get_channels(tx: Tx, query: GetChannels) -> ChannelsView:
        row = await store.channels(tx.conn, query.account_id)
        return ChannelsView(**dict(row)) if row else ChannelsView(account_id=query.account_id)

    @on(topology.NOTIFICATION_COMMANDS, GetDeliveries, idempotent=False)
    async def get_deliveries(tx: Tx, query: GetDeliveries) -> Deliveries:
        rows = await store.deliveries(tx.conn, query.account_id, query.status, query.limit)
        return Deliveries(account_id=query.account_id, deliveries=[DeliveryEntry(**dict(r)) for r in rows])

    @on(topology.NOTIFICATION_COMMANDS, ResendDeliveries)
    async def resend_deliveries(tx: Tx, cmd: ResendDeliveries) -> Deliveries:
        rows = await store.resend(tx.conn, cmd.account_id, cmd.ids)
        return Deliveries(account_id=cmd.account_id,
                          deliveries=[DeliveryEntry(**dict(r)) for r in rows])
