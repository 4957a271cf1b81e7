"""The system's AsyncAPI 3.0 document, generated from the code: every routing key a service
handles (its channel on the events or commands exchange), the contract's JSON schema, the
queue that receives it, the reply a request gets, and who publishes each event.

Built from what the services run: the handlers each one registers (``Consumer.routes``, with
the model it parses and the model it answers), the broker topology (``shared/topology.py``)
and the contracts (``shared/contracts.py``). FastStream's own generator cannot see this: the
services subscribe one generic handler per queue and route by routing key themselves.
``m1 asyncapi --output docs/asyncapi.yaml`` writes it; a test fails when the committed copy
is out of date.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from shared.contracts import ALL_MESSAGES, BY_TYPE, Message
from shared.topology import COMMANDS_EXCHANGE, DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, SERVICES

_ROOT = Path(__file__).resolve().parents[1]
_BY_NAME = {m.__name__: m for m in ALL_MESSAGES}
_EXCHANGE_TYPES = {EVENTS_EXCHANGE: "topic", COMMANDS_EXCHANGE: "topic"}
# Routing keys of events published from outside the services.
_EXTERNAL = {"funding": "the bank/ACH system (the fixed funding contract)"}


def _reply_model(handler) -> type[Message] | None:
    """The model a handler answers with (its return annotation, ``None`` left out)."""
    hint = typing.get_type_hints(handler).get("return")
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    models = [a for a in args if inspect.isclass(a) and issubclass(a, Message)]
    return models[0] if len(models) == 1 else None


def _summary(model: type) -> str:
    doc = inspect.getdoc(model) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _routes() -> list[tuple[str, Any, str, type[Message], type[Message] | None]]:
    """(service, queue, routing key, model, reply model) of every handler of every service."""
    out = []
    for service in SERVICES:
        instance = importlib.import_module(f"services.{service}.app").create_service()
        for queue, routes in instance.consumer.routes.items():
            for key, route in routes.items():
                # the contract published under the key; a service may parse it into a leaner
                # model of its own (the window reads only the balances of ledger.fills.booked)
                out.append((service, queue, key, BY_TYPE.get(key, route.model), _reply_model(route.handler)))
    return sorted(out, key=lambda r: (r[0], r[1].name, r[2]))


def document(version: str = "0.1.0") -> dict[str, Any]:
    routes = _routes()
    sends = _sends()
    models = {m for _, _, _, m, r in routes for m in (m, r) if m is not None} | {m for _, m, _ in sends}
    _, schemas = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                    ref_template="#/components/schemas/{model}")
    receivers: dict[str, list[str]] = {}
    for _, queue, key, _, _ in routes:
        receivers.setdefault(key, []).append(queue.name)
    senders: dict[str, list[str]] = {}
    for service, model, _ in sends:
        senders.setdefault(model.TYPE, []).append(service)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for service, queue, key, model, reply in routes:
        channels.setdefault(key, _channel(key, model, queue.exchange, senders.get(key, []), receivers[key]))
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{_pointer(key)}"},
            "summary": f"{service} handles it on queue {queue.name}",
            "bindings": {"$ref": "#/components/operationBindings/acknowledged"},
            "x-queue": {"name": queue.name, "type": "quorum", "deadLetteredTo": f"{DEAD_LETTER_EXCHANGE} -> "
                        f"{queue.dlq}"},
        }
        if reply is not None and queue.exchange == COMMANDS_EXCHANGE:
            operation["reply"] = {"address": {"location": "$message.header#/reply_to"},
                                  "messages": [{"$ref": f"#/components/messages/{reply.__name__}"}]}
        operations[f"{service}.receive.{key}"] = operation
    for service, model, command in sends:
        key = model.TYPE
        channels.setdefault(key, _channel(key, model, COMMANDS_EXCHANGE if command else EVENTS_EXCHANGE,
                                          senders[key], []))
        operations[f"{service}.send.{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{_pointer(key)}"},
            "summary": f"{service} {'sends this command' if command else 'publishes it'} through its outbox "
                       "(persistent, with a publisher confirm)",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "m1 back office", "version": version,
                 "description": "Every message the services handle, generated from the code (m1/asyncapi.py). "
                                "Events go to the topic exchange m1.events, commands and queries to m1.commands "
                                "(request/reply: the answer goes to reply_to); every message carries message_id "
                                "(its idempotency key), correlation_id, type and the header x-schema-version. "
                                "A refused message goes to the dead-letter exchange m1.dlx with x-reason."},
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": {"host": "127.0.0.1:5672", "protocol": "amqp", "protocolVersion": "0.9.1",
                                 "description": "M1_RABBITMQ_URL"}},
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": {m.__name__: _message(m) for m in sorted(models, key=lambda m: m.__name__)},
            "schemas": dict(sorted(schemas.get("$defs", {}).items())),
            "channelBindings": {name: {"amqp": {"is": "routingKey", "bindingVersion": "0.3.0", "exchange": {
                "name": name, "type": kind, "durable": True, "autoDelete": False, "vhost": "/"}}}
                for name, kind in _EXCHANGE_TYPES.items()},
            "operationBindings": {"acknowledged": {"amqp": {"ack": True, "bindingVersion": "0.3.0"}}},
            "messageBindings": {"persistent": {"amqp": {"bindingVersion": "0.3.0"}}},
        },
    }


def _channel(key: str, model: type[Message], exchange: str, senders: list[str], queues: list[str]
             ) -> dict[str, Any]:
    """A routing key's channel; its description says who sends it (read from the code) and
    which queues take it."""
    by = sorted(set(senders))
    if exchange == COMMANDS_EXCHANGE:
        said = f"A command or query to {key.split('.', 1)[0]}, " + (f"sent by {', '.join(by)}" if by else
                                                                     "from the CLI (no service sends it)")
    else:
        source = _EXTERNAL.get(key.split(".", 1)[0]) or ", ".join(by) or "no service of this system"
        said = f"Published by {source} to {EVENTS_EXCHANGE}"
    said += f"; received on {', '.join(sorted(queues))}." if queues else "; handled by no service of this system."
    return {"address": key,
            "messages": {model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}},
            "description": said,
            "bindings": {"$ref": f"#/components/channelBindings/{exchange}"}}


def _message(model: type[Message]) -> dict[str, Any]:
    return {
        "name": model.TYPE, "title": model.__name__, "summary": _summary(model),
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        "correlationId": {"location": "$message.header#/correlation_id"},
        "bindings": {"$ref": "#/components/messageBindings/persistent"},
        "x-schema-version": model.VERSION,
    }


def _sends(root: Path = _ROOT) -> list[tuple[str, type[Message], bool]]:
    """(service, model, sent as a command) of every ``tx.emit`` and ``tx.emit_json`` in the
    services' code: the model named in the call, or the one a variable of the same function
    was built from. An emit that cannot be read so raises: the document would miss it."""
    found = set()
    for service in SERVICES:
        for path in sorted((root / "services" / service).glob("*.py")):
            for fn in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                built = {t.id: node.value.func.id for node in ast.walk(fn) if isinstance(node, ast.Assign)
                         and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                         for t in node.targets if isinstance(t, ast.Name)}
                for call in ast.walk(fn):
                    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                            and call.func.attr in ("emit", "emit_json") and call.args):
                        continue
                    arg = call.args[0]
                    name = (arg.func.id if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name)
                            else built.get(arg.id, arg.id) if isinstance(arg, ast.Name) else None)
                    if name not in _BY_NAME:
                        raise ValueError(f"{path}:{call.lineno}: cannot tell which message this emits")
                    command = any(k.arg == "command" and isinstance(k.value, ast.Constant) and k.value.value
                                  for k in call.keywords)
                    found.add((service, name, command))
    return [(service, _BY_NAME[name], command) for service, name, command in sorted(found)]


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def render(version: str = "0.1.0") -> str:
    return yaml.safe_dump(document(version), sort_keys=False, allow_unicode=True, width=100)
