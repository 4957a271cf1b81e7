"""``m1 window show``, ``m1 window list``, ``m1 window cancel`` and ``m1 window abandon``: a
window's audited summary, the latest windows and what the unfinished ones wait for,
cancelling pending intents before their window starts, and stopping a window that has sent
no orders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from shared.contracts import AbandonWindow, CancelIntents, GetWindow, ListWindows


def _cli():
    from m1 import cli  # the shared helpers (run, _call, console, print_json) live there

    return cli


def summary_table(view: dict) -> Table:
    summary = view.get("summary") or {}
    table = Table(title=f"window {view['window_id']} ({view['status']}, closed {view['closed_at']})")
    for column in ("symbol", "intents", "gross buy", "gross sell", "net", "side", "price", "quantity", "amount",
                   "residue qty", "residue $"):
        table.add_column(column)
    for symbol, s in sorted(summary.get("securities", {}).items()):
        table.add_row(symbol, str(s["intents"]), s["gross_buy"], s["gross_sell"], s["net"], s["side"],
                      str(s["price"]), str(s["quantity"]), str(s["amount"]), str(s["residue_quantity"]),
                      str(s["residue_amount"]))
    return table


def show(window_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A window's summary: counts, and per security gross, net, fill and residue."""
    cli = _cli()
    view = cli.run(cli._call(GetWindow(window_id=_window_id(window_id))))
    if as_json:
        cli.print_json(view)
        return
    summary = view.get("summary") or {}
    cli.console.print(f"{summary.get('intents', 0)} intents from {summary.get('accounts', 0)} accounts; "
                      f"{summary.get('rejected', 0)} rejected, {summary.get('carried_over', 0)} carried over")
    if summary.get("abandoned"):
        cli.console.print(f"abandoned before it traded: {summary['abandoned']}")
    cli.console.print(summary_table(view))


def list_windows(unfinished: Annotated[bool, typer.Option("--unfinished", help="only windows still waiting for "
                                                       "the ledger or the venue")] = False,
                 limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The latest windows, newest first: status, fills batches booked, and what an unfinished
    one waits for. Exits 1 when ``--unfinished`` finds any (for a check from a job)."""
    cli = _cli()
    windows = cli.run(cli._call(ListWindows(unfinished=unfinished, limit=limit)))["windows"]
    if as_json:
        cli.print_json(windows)
    elif not windows:
        cli.console.print("no unfinished window" if unfinished else "no window yet")
    else:
        cli.console.print("\n".join(line for w in windows for line in _window_lines(w)), highlight=False, markup=False)
    if unfinished and windows:
        raise typer.Exit(1)


def _window_lines(w: dict) -> list[str]:
    """One window of ``m1 window list``: its whole id first (``show`` and ``abandon`` take it)."""
    head = f"{w['window_id']}  {w['status']}"
    if w["batches"] is not None:
        booked = "?" if w["booked_batches"] is None else w["booked_batches"]
        head += f", {booked} of {w['batches']} fills batches booked"
    closed = datetime.fromisoformat(w["closed_at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    by = f"the {w['session']} window" if w["session"] else "by an operator"
    lines = [head, f"    closed {closed} ({by})"]
    if w["waiting_for"]:
        lines.append(f"    waiting for {w['waiting_for']}")
    if w["abandoned"]:
        lines.append(f"    abandoned: {w['abandoned']}")
    return lines


def cancel(intent_ids: Annotated[list[str] | None, typer.Argument(help="intent ids")] = None,
           batch: Annotated[str | None, typer.Option("--batch", help="every intent of this batch")] = None) -> None:
    """Cancel pending intents (by id and/or batch) before their window starts."""
    cli = _cli()
    try:
        command = CancelIntents(intent_ids=[uuid.UUID(i) for i in intent_ids or []],
                                batch_id=uuid.UUID(batch) if batch else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    result = cli.run(cli._call(command))
    cli.console.print(f"cancelled {len(result['cancelled'])}")
    for intent_id, reason in sorted(result["refused"].items()):
        cli.console.print(f"  not cancelled {intent_id}: {reason}")


def _window_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise typer.BadParameter(f"not a window id: {text}") from None


def abandon(window_id: str,
            reason: Annotated[str, typer.Option("--reason", help="why, as the holders will read it")]) -> None:
    """Stop a window still holding (no orders sent, e.g. its ledger hold was dead-lettered):
    its intents wait for the next window, holders are told, held cash is released."""
    cli = _cli()
    try:
        command = AbandonWindow(window_id=_window_id(window_id), reason=reason)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    view = cli.run(cli._call(command))
    summary = view.get("summary") or {}
    cli.console.print(f"window {view['window_id']} {view['status']}: {summary.get('carried_over', 0)} intents "
                      "carried over to the next window")


def register(window_app: typer.Typer) -> None:
    window_app.command("show")(show)
    window_app.command("list")(list_windows)
    window_app.command("cancel")(cancel)
    window_app.command("abandon")(abandon)
