"""The broker topology, declared once: exchanges, every consumer queue, its bindings and DLQ.

Producers, consumers and tests import these objects; no bare queue names elsewhere.
Queue arguments cannot change on an existing queue (RabbitMQ refuses the redeclare), so a
changed argument needs a new queue name and a note in docs/operations.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aio_pika
from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

EVENTS_EXCHANGE = "m1.events"
COMMANDS_EXCHANGE = "m1.commands"
DEAD_LETTER_EXCHANGE = "m1.dlx"
# A message redelivered this many times (handler crashed on it each time) is dead-lettered.
DELIVERY_LIMIT = 5

EVENTS = RabbitExchange(EVENTS_EXCHANGE, type=ExchangeType.TOPIC, durable=True)
COMMANDS = RabbitExchange(COMMANDS_EXCHANGE, type=ExchangeType.TOPIC, durable=True)
DLX = RabbitExchange(DEAD_LETTER_EXCHANGE, type=ExchangeType.DIRECT, durable=True)

SERVICES = ("ledger", "pie", "order", "window", "margin", "notification", "market")


@dataclass(frozen=True)
class QueueSpec:
    """A durable quorum queue of one service, bound to routing keys on one exchange."""

    name: str
    exchange: str
    bindings: tuple[str, ...]
    service: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "service", self.name.split(".", 1)[0])

    @property
    def dlq(self) -> str:
        return dlq_name(self.service)

    @property
    def arguments(self) -> dict:
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": self.service,
            "x-delivery-limit": DELIVERY_LIMIT,
        }

    def rabbit_queue(self) -> RabbitQueue:
        args = {k: v for k, v in self.arguments.items() if k != "x-queue-type"}
        return RabbitQueue(self.name, queue_type=QueueType.QUORUM, durable=True, arguments=args)


def dlq_name(service: str) -> str:
    return f"{service}.dlq"


def _events(name: str, *keys: str) -> QueueSpec:
    return QueueSpec(name, EVENTS_EXCHANGE, keys)


def _commands(service: str) -> QueueSpec:
    return QueueSpec(f"{service}.commands", COMMANDS_EXCHANGE, (f"{service}.#",))


# ---- ledger
LEDGER_FUNDING = _events("ledger.funding", "funding.deposit.received", "funding.withdrawal.requested")
LEDGER_FILLS = _events("ledger.fills", "window.fills.allocated", "window.fills.batch")
LEDGER_COMMANDS = _commands("ledger")
# Withdrawals waiting for sells, rejected by the pie (the ledger pays them itself when it
# books the account's fills).
LEDGER_WITHDRAWALS = _events("ledger.withdrawals", "pie.withdrawal.refused")
# The latest prices, for the market value of holdings on statements.
LEDGER_MARKET = _events("ledger.market", "market.prices.changed",
                        # dividends, paid by the ledger's daily job on their pay date
                        "market.dividend.announced")
# ---- pie
PIE_LEDGER = _events(
    "pie.ledger", "ledger.account.opened", "ledger.cash.changed", "ledger.position.changed", "ledger.fills.booked"
)
# delistings: a pie holding a delisted security needs adjustment, its automated trades leave it out
PIE_MARKET = _events("pie.market", "market.prices.changed", "market.security.changed")
PIE_COMMANDS = _commands("pie")
PIE_WITHDRAWALS = _events("pie.withdrawals", "ledger.withdrawal.pending")
PIE_WINDOW = _events("pie.window", "window.intents.rejected")
# ---- order
ORDER_LEDGER = _events("order.ledger", "ledger.account.opened", "ledger.cash.changed", "ledger.position.changed",
                       "ledger.fills.booked", "ledger.deposit.booked", "ledger.funding.rejected")
ORDER_COMMANDS = _commands("order")
ORDER_PIE = _events("order.pie", "pie.pie.changed")
ORDER_MARKET = _events("order.market", "market.prices.changed")
ORDER_WINDOW = _events("order.window", "window.intents.carried_over", "window.intents.rejected",
                       "window.intents.cancelled")
# ---- window
WINDOW_INTENTS = _events("window.intents", "pie.intents.submitted", "order.intents.submitted")
WINDOW_EXECUTIONS = _events("window.executions", "market.orders.executed")
WINDOW_COMMANDS = _commands("window")
WINDOW_LEDGER = _events(
    "window.ledger", "ledger.account.opened", "ledger.cash.changed", "ledger.position.changed", "ledger.fills.booked",
    # the loan, for the schedule's $25,000 rule (equity less the loan)
    "ledger.loan.changed",
    # the ledger's answer to a window's cash hold: the window trades after it
    "ledger.window.held",
)
WINDOW_MARKET = _events("window.market", "market.prices.changed")
# ---- margin
MARGIN_LEDGER = _events("margin.ledger", "ledger.account.opened", "ledger.cash.changed", "ledger.position.changed",
                       # loans booked; a liquidation's own fills repay the loan
                       "ledger.loan.changed", "ledger.fills.booked")
MARGIN_MARKET = _events("margin.market", "market.prices.changed")
# The pie's answer to a liquidation (its batch and the batch's sells): a liquidation is closed
# and repays the loan by its own sells' fills, not by whatever the account sells meanwhile.
MARGIN_PIE = _events("margin.pie", "pie.cash.raising")
# A liquidation whose every sell the window rejects for good closes with nothing raised.
MARGIN_WINDOW = _events("margin.window", "window.intents.rejected")
MARGIN_COMMANDS = _commands("margin")
# ---- notification
NOTIFICATION_EVENTS = _events(
    "notification.events",
    "ledger.deposit.booked",
    "ledger.withdrawal.booked",
    "ledger.funding.rejected",
    "ledger.fills.booked",
)
NOTIFICATION_WINDOW = _events("notification.window", "window.intents.carried_over", "window.intents.rejected")
NOTIFICATION_COMMANDS = _commands("notification")
NOTIFICATION_ORDERS = _events("notification.orders", "order.order.changed", "order.order.refused")
NOTIFICATION_MARGIN = _events("notification.margin", "ledger.loan.changed", "margin.call.issued", "margin.call.met",
                              "margin.call.liquidated")
# ---- market
MARKET_COMMANDS = _commands("market")

QUEUES: tuple[QueueSpec, ...] = tuple(v for v in list(globals().values()) if isinstance(v, QueueSpec))

# Bindings of earlier versions, removed from a running broker at start (queue, exchange, key):
# a binding left behind would keep delivering messages that no handler reads.
RETIRED_BINDINGS: tuple[tuple[str, str, str], ...] = (
    # the ledger pays held withdrawals while it books the fills, not from its own event
    ("ledger.withdrawals", EVENTS_EXCHANGE, "ledger.fills.booked"),
    # the pie's answer to a liquidation names its sells: margin no longer reads every batch
    ("margin.pie", EVENTS_EXCHANGE, "pie.intents.submitted"),
)


def queues_of(service: str) -> list[QueueSpec]:
    return [q for q in QUEUES if q.service == service]


async def declare(channel: aio_pika.abc.AbstractChannel) -> None:
    """Declare every exchange, queue, binding and DLQ. Idempotent; every service runs it at
    start so that no event is published before the queues that should receive it exist."""
    exchanges = {
        EVENTS_EXCHANGE: await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True),
        COMMANDS_EXCHANGE: await channel.declare_exchange(COMMANDS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True),
    }
    dlx = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
    for service in SERVICES:
        dlq = await channel.declare_queue(dlq_name(service), durable=True, arguments={"x-queue-type": "quorum"})
        await dlq.bind(dlx, routing_key=service)
    for spec in QUEUES:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        for key in spec.bindings:
            await queue.bind(exchanges[spec.exchange], routing_key=key)
    for name, exchange, key in RETIRED_BINDINGS:
        queue = await channel.declare_queue(name, passive=True)
        await queue.unbind(exchanges[exchange], routing_key=key)


async def declare_all(url: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        await declare(await connection.channel())
    finally:
        await connection.close()
