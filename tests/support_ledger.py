"""The ledger's own checks, run at the end of every end-to-end scenario: the beancount
export passes beancount's checker, and ``m1 ledger audit`` finds no difference."""

from __future__ import annotations

from typing import Any

from shared.contracts import AuditLedger, ExportJournal
from tests.support import eventually


def beancount_errors(text: str) -> list[str]:
    """What beancount's checker (the loader bean-check runs: syntax, balanced transactions,
    open accounts, balance assertions) says about an export; empty when it passes."""
    from beancount import loader

    _, errors, _ = loader.load_string(text)
    return [f"{getattr(e, 'source', None)}: {e.message}" for e in errors]


async def assert_ledger_checks_out(requester: Any, *, timeout: float = 60.0) -> None:
    """Once the books are quiet (the audit is clean; messages still in flight may leave a
    window half booked for a moment), the export must pass beancount's checker.
    ``requester`` is anything with ``request(command) -> Reply`` (tests.support.Bus,
    m1.client.Client)."""

    async def audit_clean():
        reply = await requester.request(AuditLedger())
        assert reply.ok, reply.reason
        return reply.result if reply.result["ok"] else None

    try:
        await eventually(audit_clean, timeout=timeout, interval=0.5)
    except AssertionError:
        report = (await requester.request(AuditLedger())).result
        raise AssertionError("ledger audit: " + "; ".join(report["differences"])) from None
    export = await requester.request(ExportJournal(format="beancount"))
    assert export.ok, export.reason
    errors = beancount_errors(export.result["text"])
    assert not errors, "beancount check of the export failed:\n" + "\n".join(errors[:20])
