"""Contracts benchmark: how long a service takes to read the largest messages it gets.

A window of a million intents reaches the ledger as ``window.fills.batch`` messages of some
20,000 fills and every consumer of ``ledger.fills.booked`` (pie, order, margin, notification,
window) as messages of 2,000 accounts with their fills and positions. This parses one of each
(synthetic, the benchmark's shapes) with the contracts, as a consumer does
(``model_validate_json``), and in the same run with ``json.loads`` alone (the bare floor:
the JSON, no models, no checks), each with Python's default garbage collector settings and
as a service process runs (``shared.service.tune_gc``).

    .venv/bin/python bench/contracts.py [--accounts N] [--fills-per-account K] [--runs R]

Pure Python, no servers; a separate command, never part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from services.window.handlers import BookedBalances  # noqa: E402
from shared.contracts import FillsBatch, FillsBooked  # noqa: E402
from shared.service import tune_gc  # noqa: E402
from shared.settings import Settings  # noqa: E402


def bodies(accounts: int, per_account: int) -> dict[str, bytes]:
    window = str(uuid.uuid4())
    booked_at = "2026-11-25T15:00:05+00:00"
    rows, parts = [], []
    for a in range(accounts):
        account = f"a{a:06d}"
        fills = [[str(uuid.uuid4()), account, f"S{k:04d}", "buy" if k % 3 else "sell", f"{k + 1}.23456",
                  f"{20 + k}.00", f"{100 + k}.123456"] for k in range(per_account)]
        rows += fills
        parts.append({"account_id": account, "window_id": window, "booked_at": booked_at, "version": 7,
                      "cash": "1234.56", "positions": {f"S{k:04d}": f"{k + 3}.21000" for k in range(per_account)},
                      "fills": [dict(zip(("intent_id", "account_id", "symbol", "side", "quantity", "amount", "price"),
                                         f)) for f in fills]})
    return {
        "window.fills.batch (the ledger)": json.dumps({"window_id": window, "batch": 0, "batches": 50,
                                                       "fills": rows}).encode(),
        "ledger.fills.booked (pie, order, margin, notification)": json.dumps(
            {"window_id": window, "batch": 0, "booked_at": booked_at, "accounts": parts}).encode(),
    }


def best(parse, body: bytes, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        parse(body)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--fills-per-account", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    messages = bodies(args.accounts, args.fills_per_account)
    readers = {"window.fills.batch (the ledger)": [("FillsBatch", FillsBatch)],
               "ledger.fills.booked (pie, order, margin, notification)": [("FillsBooked", FillsBooked),
                                                                          ("window's BookedBalances", BookedBalances)]}
    print(f"contracts benchmark: {args.accounts:,} accounts x {args.fills_per_account} fills, "
          f"median of {args.runs} runs (ms)")
    for setting in ("Python's default collector", "as a service process runs (tune_gc)"):
        if setting.startswith("as a service"):
            tune_gc(Settings().gc_threshold)
        print(f"  {setting}:")
        for name, body in messages.items():
            floor = best(json.loads, body, args.runs)
            print(f"    {name}, {len(body) / 1e6:.1f} MB: json.loads {floor:7.1f}")
            for label, model in readers[name]:
                took = best(model.model_validate_json, body, args.runs)
                print(f"      {label:<26} {took:7.1f}  ({took / floor:.2f}x json.loads)")
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
