"""``m1 channels set|show`` and ``m1 deliveries``: an account's notification channels (webhook,
email; the log is always on) and what was delivered on them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from m1.client import explain
from shared.contracts import GetChannels, GetDeliveries, ResendDeliveries, SetChannels

channels_app = typer.Typer(no_args_is_help=True, help="Notification channels of an account (the log is always on).")

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _cli():
    from m1 import cli  # the shared helpers (run, _call, console, print_json) live there

    return cli


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """``--since``: an ISO timestamp (UTC when it names no zone) or an age such as ``30m``,
    ``2h``, ``1d``."""
    if text is None:
        return None
    if match := _RELATIVE.match(text.strip()):
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"not a time: {text!r} (an ISO timestamp, or an age like 30m, 2h, 1d)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@channels_app.command("set")
def channels_set(
    account_id: str,
    webhook: Annotated[str | None, typer.Option(help="URL to POST each notification to (signed).")] = None,
    secret: Annotated[str | None, typer.Option(envvar="M1_WEBHOOK_SECRET",
                                               help="The webhook's signing secret (16+ characters).")] = None,
    email: Annotated[str | None, typer.Option(help="Address to email each notification to.")] = None,
) -> None:
    """Replace the account's channels: a channel not given is turned off."""
    cli = _cli()
    try:
        command = SetChannels(account_id=account_id, webhook_url=webhook, webhook_secret=secret, email=email)
    except ValidationError as exc:
        raise typer.BadParameter(explain(exc)) from None
    _print_channels(cli, cli.run(cli._call(command)))


@channels_app.command("show")
def channels_show(account_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The account's channels (the webhook secret is never shown)."""
    cli = _cli()
    view = cli.run(cli._call(GetChannels(account_id=account_id)))
    if as_json:
        cli.print_json(view)
    else:
        _print_channels(cli, view)


def _print_channels(cli, view: dict) -> None:
    webhook = f"{view['webhook_url']} (signed)" if view["webhook_url"] else "off"
    cli.console.print(f"{view['account_id']}: log on; webhook {webhook}; email {view['email'] or 'off'}")


def deliveries(
    account_id: str,
    status: Annotated[str | None, typer.Option(help="Only pending, delivered or failed.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    resend: Annotated[bool, typer.Option("--resend", help="First send the failed deliveries again.")] = False,
) -> None:
    """Webhook and email deliveries of the account's notifications: status, attempts, last error."""
    cli = _cli()
    if resend:
        again = cli.run(cli._call(ResendDeliveries(account_id=account_id)))
        cli.console.print(f"{len(again['deliveries'])} failed deliveries queued again")
    try:
        query = GetDeliveries(account_id=account_id, status=status)
    except ValidationError:
        raise typer.BadParameter("status is one of pending, delivered, failed") from None
    result = cli.run(cli._call(query))
    if as_json:
        cli.print_json(result["deliveries"])
        return
    if not result["deliveries"]:
        cli.console.print("no deliveries")
        return
    table = Table(title=f"{account_id}: deliveries")
    for column in ("feed", "kind", "channel", "status", "attempts", "delivered / next try", "last error"):
        table.add_column(column)
    for d in result["deliveries"]:
        when = d["delivered_at"] if d["status"] == "delivered" else d["next_attempt_at"] or ""
        table.add_row(str(d["feed_id"]), d["kind"], d["channel"], d["status"], str(d["attempts"]),
                      (when or "")[:19], d["last_error"] or "")
    cli.console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(channels_app, name="channels")
    app.command("deliveries")(deliveries)
