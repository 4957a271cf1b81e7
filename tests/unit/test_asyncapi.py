"""The AsyncAPI document (docs/asyncapi.yaml) is generated from the code and says what the
services really do: what each queue handles, who publishes what, what a request answers."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from m1.asyncapi import _sends, document, render
from shared import topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def doc() -> dict:
    return document(version("m1-backoffice"))


def test_the_committed_document_is_the_one_the_code_generates():
    committed = (ROOT / "docs" / "asyncapi.yaml").read_text()
    assert committed == render(version("m1-backoffice")), \
        "docs/asyncapi.yaml is out of date: run `m1 asyncapi --output docs/asyncapi.yaml`"


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_reference_resolves(doc):
    for ref in set(_refs(doc)):
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        assert node, ref


def test_every_key_a_queue_is_bound_to_is_handled_there(doc):
    handled = {(op["x-queue"]["name"], op["channel"]["$ref"].removeprefix("#/channels/"))
               for op in doc["operations"].values() if op["action"] == "receive"}
    for spec in topology.QUEUES:
        for key in spec.bindings:
            if "#" not in key and "*" not in key:
                assert (spec.name, key) in handled, (spec.name, key)


def test_the_funding_contract_is_received_by_the_ledger_from_the_bank(doc):
    channel = doc["channels"]["funding.deposit.received"]
    assert "bank/ACH" in channel["description"]
    assert channel["bindings"] == {"$ref": "#/components/channelBindings/m1.events"}
    schema = doc["components"]["schemas"]["DepositReceived"]
    assert set(schema["required"]) == {"deposit_id", "account_id", "amount", "currency", "received_at"}
    assert doc["operations"]["ledger.receive.funding.deposit.received"]["x-queue"]["name"] == "ledger.funding"


def test_sends_are_read_from_the_services_code(doc):
    sends = {name for name, op in doc["operations"].items() if op["action"] == "send"}
    # the window sends its fills in batches (it no longer sends a whole window's fills) and
    # asks the ledger to hold cash (a command), the ledger answers with an event
    assert {"window.send.window.fills.batch", "window.send.ledger.window.hold",
            "ledger.send.ledger.window.held", "market.send.market.orders.executed"} <= sends
    assert "window.send.window.fills.allocated" not in sends
    assert "sends this command" in doc["operations"]["window.send.ledger.window.hold"]["summary"]
    # who publishes a channel is read from the code too: the ledger takes no part in
    # ledger.position.changed any more, though four services still handle it
    assert doc["channels"]["ledger.window.hold"]["description"].startswith(
        "A command or query to ledger, sent by window")
    assert doc["channels"]["ledger.position.changed"]["description"].startswith(
        "Published by no service of this system to m1.events; received on margin.ledger")


def test_an_emit_whose_message_cannot_be_read_stops_the_generator(tmp_path):
    (tmp_path / "services" / "ledger").mkdir(parents=True)
    (tmp_path / "services" / "ledger" / "handlers.py").write_text(
        "async def handle(tx, event):\n    tx.emit(CashChanged(**event))\n    tx.emit(event.outcome)\n")
    with pytest.raises(ValueError, match=r"handlers.py:3: cannot tell which message this emits"):
        _sends(tmp_path)
    (tmp_path / "services" / "ledger" / "handlers.py").write_text(
        "async def handle(tx, event):\n    done = CashChanged(**event)\n    tx.emit(done, command=True)\n")
    assert [(service, model.__name__, command) for service, model, command in _sends(tmp_path)] == [
        ("ledger", "CashChanged", True)]


def test_a_query_names_its_reply_and_every_service_answers_for_its_dead_letters(doc):
    listing = doc["operations"]["window.receive.window.window.list"]
    assert listing["reply"]["messages"] == [{"$ref": "#/components/messages/WindowList"}]
    for service in topology.SERVICES:
        replay = doc["operations"][f"{service}.receive.{service}.dead_letters.replay"]
        assert replay["x-queue"]["name"] == f"{service}.commands"
        assert replay["reply"]["messages"] == [{"$ref": "#/components/messages/DeadLetterView"}]


def test_the_document_is_yaml_of_asyncapi_3(doc):
    loaded = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert loaded["asyncapi"] == "3.0.0" and loaded["info"]["version"] == version("m1-backoffice")
