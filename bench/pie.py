"""Pie benchmark: allocating a deposit across a 5-level tree of 100-slice pies.

The tree: a root pie and five nested pies below it (levels 1 to 5), each of 100 slices:
99 securities at 1% and one sub-pie at 1% (the deepest pie has 100 securities). That is the
deepest nesting allowed, every pie at the 100-slice limit, 595 securities in all. (Making
every slice a pie would be 100^5 pies, not a portfolio anyone holds.) The holdings are
drifted pseudo-randomly (fixed seed), so the water-filling has real work at every level.

Measured, for a deposit of $12,345.67 (median and p99 of N runs):
- allocation only: the values already in integer cents (``Tree.cents_of``), sum the
  sub-pies, water-fill and round every pie (``buys_for``);
- compiled tree: ``rebalance.deposit`` on a ``Tree`` compiled once (what a service holding
  the pie does): also converts the 595 Decimal values and builds the plan;
- from the PieSpec: also compiles the tree (paths, targets) from the pydantic model;
and for comparison a withdrawal and a full rebalance on the compiled tree.

    .venv/bin/python bench/pie.py [--runs N]

A separate command, never part of the test suite.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from decimal import Decimal

from services.pie import rebalance
from shared.contracts import PieSpec

LEVELS = 5


def tree(level: int = 0) -> dict:
    prefix = f"L{level}"
    if level == LEVELS:
        return {"name": prefix, "slices": [{"target": 1, "symbol": f"{prefix}S{i}"} for i in range(100)]}
    slices = [{"target": 1, "symbol": f"{prefix}S{i}"} for i in range(99)]
    return {"name": prefix, "slices": [*slices, {"target": 1, "pie": tree(level + 1) | {"name": f"P{level + 1}"}}]}


def values(pie: PieSpec) -> dict[str, Decimal]:
    rng = random.Random(7)
    paths = rebalance.Tree(pie).paths
    return {p: Decimal(rng.randint(0, 500_00)) / 100 for p in paths}


def measure(fn, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99) - 1] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    pie = PieSpec.model_validate(tree())
    held = values(pie)
    securities = len(held)
    plan = rebalance.deposit(pie, held, Decimal("12345.67"))
    assert plan.buys + plan.left_out == Decimal("12345.67")
    print(f"tree: {LEVELS + 1} pies of 100 slices (root + {LEVELS} nested levels), {securities} securities")
    compiled = rebalance.Tree(pie)
    leaf_cents = compiled.cents_of(held)
    amount = Decimal("12345.67")
    for name, fn in [
        ("deposit, allocation only", lambda: rebalance.buys_for(compiled.node(leaf_cents), 1234567)),
        ("deposit, compiled tree", lambda: rebalance.deposit(compiled, held, amount)),
        ("deposit, from the PieSpec", lambda: rebalance.deposit(pie, held, amount)),
        ("withdrawal $5,000.00, compiled tree", lambda: rebalance.withdrawal(compiled, held, Decimal("5000.00"))),
        ("full rebalance, compiled tree", lambda: rebalance.rebalance(compiled, held)),
    ]:
        p50, p99 = measure(fn, args.runs)
        print(f"{name:38s} p50 {p50:8.1f} us   p99 {p99:8.1f} us   ({args.runs} runs)")


if __name__ == "__main__":
    main()
