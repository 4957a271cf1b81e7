"""An operator's dead letters against the real RabbitMQ and PostgreSQL: a refused message is
listed with its reason, read whole, and replayed once, after its cause is fixed, to the queue
that refused it and to no other (shared/dead_letters.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from shared import topology
from shared.contracts import (
    AccountFills,
    FillsBooked,
    GetDeadLetter,
    ListDeadLetters,
    OpenAccount,
    ReplayDeadLetter,
    dead_letter_key,
)
from shared.settings import Settings
from tests.integration.test_ledger import cash, deposit_body
from tests.support import create_vhost, delete_vhost, eventually, fetch, fetchval, rabbitmqctl, unique_name

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def ask(bus, service: str, message):
    return await bus.request(message, routing_key=dead_letter_key(type(message), service))


async def dead_letters(bus, service: str, **query) -> list[dict]:
    reply = await ask(bus, service, ListDeadLetters(limit=500, **query))
    assert reply.ok, reply
    assert reply.result["service"] == service
    return reply.result["dead_letters"]


async def dead_letter_of(bus, service: str, message_id: str, **query) -> dict | None:
    return next((d for d in await dead_letters(bus, service, **query) if d["message_id"] == message_id), None)


async def waiting_in(bus, queue: str) -> int:
    """Messages in a queue nobody consumes in the test (a passive declare reads the count)."""
    channel = await bus.connection.channel()
    try:
        return (await channel.declare_queue(queue, passive=True)).declaration_result.message_count
    finally:
        await channel.close()


async def test_a_deposit_refused_for_an_unknown_account_is_replayed_once_after_the_account_opens(
        service_factory, bus, settings: Settings):
    account = f"acc-{uuid.uuid4().hex[:8]}"
    body = deposit_body(account, "125.40")
    async with service_factory("ledger").running():
        await bus.publish_json("funding.deposit.received", body, message_id=body["deposit_id"])
        letter = await eventually(lambda: dead_letter_of(bus, "ledger", body["deposit_id"]))
        assert letter["reason"] == f"unknown account {account}"
        assert (letter["routing_key"], letter["queue"], letter["account_id"]) == (
            "funding.deposit.received", topology.LEDGER_FUNDING.name, account)
        assert letter["replayed_at"] is None and letter["body"] is None  # a list carries no bodies
        assert not letter["answered"]  # an event: nobody was told
        whole = (await ask(bus, "ledger", GetDeadLetter(id=letter["id"]))).result["dead_letter"]
        assert json.loads(whole["body"]) == body and whole["size"] == len(whole["body"].encode())

        assert (await bus.request(OpenAccount(account_id=account))).ok
        reply = await ask(bus, "ledger", ReplayDeadLetter(id=letter["id"]))
        assert reply.ok, reply
        replayed = reply.result["dead_letter"]
        assert replayed["replayed_at"] is not None and replayed["message_id"] == body["deposit_id"]
        # Handled under the deposit's own id, as the funding contract requires.
        await eventually(lambda: fetchval(settings.database_url, "SELECT count(*) FROM ledger.inbox "
                                          "WHERE message_id = $1 AND outcome = 'ok'", body["deposit_id"]))
        assert await cash(bus, account) == Decimal("125.40")

        # Once: a second replay is refused with the reason, and nothing is booked twice.
        again = await ask(bus, "ledger", ReplayDeadLetter(id=letter["id"]))
        assert not again.ok
        assert again.reason == (f"dead letter {letter['id']} of ledger was replayed at "
                                f"{datetime.fromisoformat(replayed['replayed_at']).isoformat()}")
        # the refused request is a dead letter too, marked as answered: the operator was told
        [refused] = [d for d in await dead_letters(bus, "ledger") if d["routing_key"] == "ledger.dead_letters.replay"
                     and d["reason"] == again.reason]
        assert refused["answered"] and refused["queue"] == topology.LEDGER_COMMANDS.name
        # The bank delivering the deposit again changes nothing either.
        await bus.publish_json("funding.deposit.received", body, message_id=body["deposit_id"])
        later = deposit_body(account, "1.00")  # a later one, to wait on
        await bus.publish_json("funding.deposit.received", later, message_id=later["deposit_id"])
        async def later_one_booked():
            return await cash(bus, account) == Decimal("126.40")

        await eventually(later_one_booked)
        assert await cash(bus, account) == Decimal("126.40")  # 125.40 once, and the later 1.00
        # Replayed letters leave the default list, and stay in the whole one.
        assert await dead_letter_of(bus, "ledger", body["deposit_id"]) is None
        assert (await dead_letter_of(bus, "ledger", body["deposit_id"], replayed=True))["id"] == letter["id"]
        unknown = await ask(bus, "ledger", ReplayDeadLetter(id=2_000_000_000))
        assert not unknown.ok and unknown.reason == "ledger has no dead letter 2000000000"


async def test_an_event_one_service_refused_is_replayed_to_that_service_alone(service_factory, bus, settings):
    """The window refuses a ``ledger.fills.booked`` of a window it never ran; the same event
    also went to the pie, the order, the margin and the notification services. Its replay
    reaches the window's queue only; refused again, it is a new dead letter of the same chain."""
    unknown, account = uuid.uuid4(), f"acc-{uuid.uuid4().hex[:8]}"
    booked = FillsBooked(window_id=unknown, batch=0, booked_at="2026-11-25T15:00:00Z", accounts=[
        AccountFills(account_id=account, window_id=unknown, fills=[], cash="20.00", positions={}, version=2,
                     booked_at="2026-11-25T15:00:00Z")])
    others = [q.name for q in topology.QUEUES if FillsBooked.TYPE in q.bindings and q.service != "window"]
    assert len(others) == 4
    message_id = str(uuid.uuid4())
    async with service_factory("window").running():
        await bus.publish_json(FillsBooked.TYPE, booked.model_dump(mode="json"), message_id=message_id)
        letter = await eventually(lambda: dead_letter_of(bus, "window", message_id))
        assert letter["queue"] == topology.WINDOW_LEDGER.name
        before = {q: await waiting_in(bus, q) for q in others}
        # as a row refused before dead letters recorded their queue: the one queue of the
        # window with a handler for the key is found
        await fetch(settings.database_url, 'UPDATE "window".dead_letters SET queue = NULL WHERE id = $1',
                      letter["id"])

        reply = await ask(bus, "window", ReplayDeadLetter(id=letter["id"]))
        assert reply.ok, reply
        assert reply.result["dead_letter"]["queue"] == topology.WINDOW_LEDGER.name
        async def refused_again():
            return next((d for d in await dead_letters(bus, "window")
                         if d["message_id"] == message_id and d["id"] != letter["id"]), None)

        second = await eventually(refused_again)
        assert second["reason"] == letter["reason"] == f"fills booked for unknown window {unknown}"
        assert (second["routing_key"], second["queue"], second["correlation_id"]) == (
            FillsBooked.TYPE, topology.WINDOW_LEDGER.name, letter["correlation_id"])
        assert {q: await waiting_in(bus, q) for q in others} == before


async def test_a_replay_refused_again_tells_the_holder_nothing_new(service_factory, bus, settings):
    """A deposit of a known account that breaks the contract is refused and the holder told;
    replayed with its cause not fixed, it is refused again as a new dead letter, and the
    holder's notice carries the first one's id (the notification service takes it once)."""
    account = f"acc-{uuid.uuid4().hex[:8]}"
    told = await bus.channel.declare_queue(exclusive=True, auto_delete=True)
    await told.bind(bus.events, routing_key="ledger.funding.rejected")
    body = deposit_body(account, "12.345")
    async with service_factory("ledger").running():
        assert (await bus.request(OpenAccount(account_id=account))).ok
        await bus.publish_json("funding.deposit.received", body, message_id=body["deposit_id"])
        letter = await eventually(lambda: dead_letter_of(bus, "ledger", body["deposit_id"]))
        assert letter["reason"].startswith("invalid message: amount:")
        assert (await ask(bus, "ledger", ReplayDeadLetter(id=letter["id"]))).ok

        async def refused_again():
            return [d for d in await dead_letters(bus, "ledger")
                    if d["message_id"] == body["deposit_id"] and d["id"] != letter["id"]]

        [second] = await eventually(refused_again)
        assert second["reason"] == letter["reason"]
        notices = []

        async def both_notices():
            while (msg := await told.get(fail=False, no_ack=True)) is not None:
                if json.loads(msg.body)["account_id"] == account:
                    notices.append(msg.message_id)
            return len(notices) == 2

        await eventually(both_notices)
        assert notices[0] == notices[1]
        assert await cash(bus, account) == Decimal("0.00")


async def test_a_message_no_handler_takes_or_one_handled_since_is_not_replayed(service_factory, bus, settings):
    """Replaying what nobody would handle, or a conflict (its id was since accepted with
    another body), is refused with the reason: neither would do anything but a duplicate or
    another refusal."""
    account = f"acc-{uuid.uuid4().hex[:8]}"
    async with service_factory("ledger").running():
        assert (await bus.request(OpenAccount(account_id=account))).ok
        body = deposit_body(account, "10.00")
        await bus.publish_json("funding.deposit.received", body, message_id=body["deposit_id"])

        async def booked():
            return await cash(bus, account) == Decimal("10.00")

        await eventually(booked)
        await bus.publish_json("funding.deposit.received", {**body, "amount": "99.00"},
                               message_id=body["deposit_id"])
        conflict = await eventually(lambda: dead_letter_of(bus, "ledger", body["deposit_id"]))
        assert conflict["reason"] == "message id already used for a different message; refused as a conflict"
        refused = await ask(bus, "ledger", ReplayDeadLetter(id=conflict["id"]))
        assert not refused.ok
        assert refused.reason == (f"message {body['deposit_id']} was handled (ok) under its id since it was "
                                  "refused: a replay would be a duplicate")
        assert await cash(bus, account) == Decimal("10.00")

        nobody = str(uuid.uuid4())  # a refusal of a key the ledger no longer handles, before queues were recorded
        await fetch(settings.database_url, "INSERT INTO ledger.dead_letters (message_id, routing_key, reason, body) "
                      "VALUES ($1, 'nobody.reads.this', 'no contract', '{}')", nobody)
        stray = await dead_letter_of(bus, "ledger", nobody)
        refused = await ask(bus, "ledger", ReplayDeadLetter(id=stray["id"]))
        assert not refused.ok and refused.reason == "no handler of ledger takes 'nobody.reads.this': " \
                                                    "a replay would be refused again"


async def test_the_dlq_retention_policy_of_the_deployment_bounds_every_dlq_and_no_other_queue():
    """The policy in deploy/k8s/infra/rabbitmq-policies.yaml, set on a broker with the whole
    topology declared, applies to each service's DLQ and leaves the work queues alone."""
    policy = yaml.safe_load((ROOT / "deploy/k8s/infra/rabbitmq-policies.yaml").read_text())["spec"]
    vhost = unique_name("m1-policy")
    url = create_vhost(vhost)
    try:
        await topology.declare_all(url)
        rabbitmqctl("set_policy", "-p", vhost, "--apply-to", policy["applyTo"], "--priority", str(policy["priority"]),
                    policy["name"], policy["pattern"], json.dumps(policy["definition"]))
        listed = subprocess.run([shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl", "-q", "list_queues", "-p",
                                 vhost, "name", "policy", "--formatter", "json"],
                                check=True, capture_output=True, text=True, timeout=60).stdout
        by_queue = {q["name"]: q["policy"] for q in json.loads(listed)}
        dlqs = {topology.dlq_name(s) for s in topology.SERVICES}
        assert dlqs <= set(by_queue)
        assert {q: p for q, p in by_queue.items() if p} == {q: policy["name"] for q in dlqs}
    finally:
        delete_vhost(vhost)
