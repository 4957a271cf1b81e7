"""``m1 dead-letters list|show|replay``: the messages a service refused, with the reason, and
their replay to the queue that refused them once the cause is fixed (shared/dead_letters.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer

from m1.client import Client, ServiceError
from shared.contracts import GetDeadLetter, ListDeadLetters, ReplayDeadLetter, dead_letter_key
from shared.settings import get_settings
from shared.topology import SERVICES

dead_letters_app = typer.Typer(no_args_is_help=True, help="Messages a service refused: list, read, replay.")
ServiceName = StrEnum("ServiceName", {s: s for s in SERVICES})


def _cli():
    from m1 import cli  # the shared helpers (run, console, print_json) live there

    return cli


def _to(client: Client, service: str, message) -> Awaitable[dict]:
    return client.call(message, routing_key=dead_letter_key(type(message), service))


async def _ask(service: str, message) -> dict:
    async with Client(get_settings()) as client:
        return await _to(client, service, message)


async def _ask_each(services: list[str], query: ListDeadLetters) -> tuple[list[dict], list[str]]:
    """Every service's answer at once; the services that did not answer, with why."""
    async with Client(get_settings()) as client:
        answers = await asyncio.gather(*(_to(client, s, query) for s in services), return_exceptions=True)
    found, silent = [], []
    for service, answer in zip(services, answers):
        if isinstance(answer, ServiceError):
            silent.append(f"{service}: refused: {answer.reply.reason}")
        elif isinstance(answer, Exception):
            silent.append(f"{service}: no answer (is it running?)")
        else:
            found.extend({**d, "service": service} for d in answer["dead_letters"])
    return found, silent


def _when(value: str) -> str:
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def dead_letter_lines(d: dict) -> list[str]:
    """One dead letter of ``m1 dead-letters list``: service and id first (``show`` and
    ``replay`` take them), then where it came from, the reason and its ids; lines of a
    terminal's width, ids whole."""
    where = [f"account {d['account_id']}"] if d["account_id"] else []
    where += [f"queue {d['queue']}"] if d["queue"] else []
    lines = [f"{d['service']} {d['id']}  {d['routing_key']}  {_when(d['received_at'])}",
             "    " + ", ".join([*where, f"{d['size']:,} bytes"])]
    if d["answered"]:
        lines.append("    a request: its sender was told")
    lines += [f"    reason: {d['reason']}", f"    message {d['message_id']}", f"    correlation {d['correlation_id']}"]
    if d["replayed_at"]:
        lines.append(f"    replayed {_when(d['replayed_at'])}")
    return lines


def list_dead_letters(
        service: Annotated[ServiceName | None, typer.Argument(help="one service (default: every service)")] = None,
        replayed: Annotated[bool, typer.Option("--replayed", help="also those already replayed")] = False,
        limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="per service")] = 20,
        as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Refused messages, newest first, with the reason (not yet replayed, unless --replayed)."""
    cli = _cli()
    services = [service.value] if service else list(SERVICES)
    found, silent = cli.run(_ask_each(services, ListDeadLetters(replayed=replayed, limit=limit)))
    found.sort(key=lambda d: d["received_at"], reverse=True)
    if as_json:
        cli.print_json(found)
    elif not found:
        cli.console.print("no dead letters" if replayed else "no dead letter waiting for a replay", highlight=False)
    else:
        cli.console.print("\n".join(line for d in found for line in dead_letter_lines(d)), highlight=False,
                          markup=False, soft_wrap=True)
    for line in silent:
        typer.echo(line, err=True)
    if silent and len(silent) == len(services):
        raise typer.Exit(1)


def show(service: ServiceName, dead_letter_id: Annotated[int, typer.Argument(min=1)],
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One dead letter: where it came from, the whole reason, and its body."""
    cli = _cli()
    view = cli.run(_ask(service.value, GetDeadLetter(id=dead_letter_id)))["dead_letter"]
    if as_json:
        cli.print_json(view)
        return
    body = view.pop("body")
    try:
        body = json.dumps(json.loads(body), indent=2)
    except ValueError:
        pass  # not JSON: shown as it came
    text = "\n".join([*dead_letter_lines({**view, "service": service.value}), body])
    cli.console.print(text, highlight=False, markup=False, soft_wrap=True)


def replay(service: ServiceName, dead_letter_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Deliver a dead letter again, once, to the queue that refused it alone (fix its cause first)."""
    cli = _cli()
    view = cli.run(_ask(service.value, ReplayDeadLetter(id=dead_letter_id)))["dead_letter"]
    cli.console.print(f"dead letter {service.value} {view['id']} ({view['routing_key']}, message {view['message_id']}) "
                      f"replayed to {view['queue']}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    dead_letters_app.command("list")(list_dead_letters)
    dead_letters_app.command("show")(show)
    dead_letters_app.command("replay")(replay)
    app.add_typer(dead_letters_app, name="dead-letters")
