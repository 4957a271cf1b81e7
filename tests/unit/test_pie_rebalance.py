"""Dynamic rebalancing (services/pie/rebalance.py): deposits buy the most underweight slices
first, withdrawals sell the most overweight first, a full rebalance brings every slice at
every level to target; all exact to the cent. The property tests compare each pie's amounts
with an independent optimum of the same objective computed by scipy."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import lsq_linear

from services.pie import rebalance
from services.pie.rebalance import RebalanceError
from shared.contracts import PieSpec, Side

D = Decimal
CENT = D("0.01")
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOLVER = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pie(name: str, *slices: tuple[int, str | PieSpec]) -> PieSpec:
    return PieSpec.model_validate({"name": name, "slices": [
        {"target": t, "symbol": s} if isinstance(s, str) else {"target": t, "pie": s.model_dump()} for t, s in slices
    ]})


ABC = pie("ABC", (40, "A"), (40, "B"), (20, "C"))
NESTED = pie("Root", (60, pie("Stocks", (50, "VTI"), (50, "VXUS"))), (40, "BND"))


def moves(plan: rebalance.Plan) -> dict[str, Decimal]:
    return {t.path: t.amount if t.side is Side.BUY else -t.amount for t in plan.trades}


# ---------------------------------------------------------------- examples


def test_the_seeds_example_rebalances_50_30_20_back_to_40_40_20():
    values = {"A": D("50.00"), "B": D("30.00"), "C": D("20.00")}
    plan = rebalance.rebalance(ABC, values)
    after = {p: values[p] + moves(plan).get(p, 0) for p in values}
    assert after == {"A": D("40.00"), "B": D("40.00"), "C": D("20.00")}
    assert moves(plan) == {"A": D("-10.00"), "B": D("10.00")}


def test_a_first_deposit_is_split_exactly_by_target():
    five = pie("Five", *[(20, s) for s in ("A", "B", "C", "D", "E")])
    assert moves(rebalance.deposit(five, {}, D("100.00"))) == {s: D("20.00") for s in "ABCDE"}


def test_a_first_deposit_into_a_nested_pie_splits_pie_by_pie():
    assert moves(rebalance.deposit(NESTED, {}, D("100.00"))) == {
        "Stocks/VTI": D("30.00"), "Stocks/VXUS": D("30.00"), "BND": D("40.00")}


def test_a_deposit_goes_to_the_most_underweight_slice_first():
    # 50/30/20 of 40/40/20: B is furthest below target; $8 only lifts B.
    plan = rebalance.deposit(ABC, {"A": D("50.00"), "B": D("30.00"), "C": D("20.00")}, D("8.00"))
    assert moves(plan) == {"B": D("8.00")}


def test_a_deposit_lifts_the_lowest_slices_to_a_common_level_and_sells_nothing():
    plan = rebalance.deposit(ABC, {"A": D("50.00"), "B": D("30.00"), "C": D("20.00")}, D("30.00"))
    assert moves(plan) == {"A": D("2.00"), "B": D("22.00"), "C": D("6.00")}  # 52 / 52 / 26


def test_a_deposit_into_a_nested_pie_fills_the_underweight_sub_pie_first():
    values = {"Stocks/VTI": D("30.00"), "Stocks/VXUS": D("10.00"), "BND": D("60.00")}
    plan = rebalance.deposit(NESTED, values, D("20.00"))
    assert moves(plan) == {"Stocks/VXUS": D("20.00")}  # Stocks 40 -> 60 of 120 = 50%, and VXUS first


def test_a_buy_under_one_dollar_is_left_out_and_its_cash_stays():
    plan = rebalance.deposit(ABC, {"A": D("40.00"), "B": D("40.00"), "C": D("20.00")}, D("4.00"))
    assert moves(plan) == {"A": D("1.60"), "B": D("1.60")}
    assert plan.left_out == D("0.80")


def test_a_withdrawal_sells_the_most_overweight_slice_first():
    plan = rebalance.withdrawal(ABC, {"A": D("50.00"), "B": D("30.00"), "C": D("20.00")}, D("10.00"))
    assert moves(plan) == {"A": D("-10.00")}


def test_a_withdrawal_of_everything_sells_every_slice_whole():
    values = {"A": D("50.00"), "B": D("30.00"), "C": D("20.00")}
    plan = rebalance.withdrawal(ABC, values, D("100.00"))
    assert moves(plan) == {p: -v for p, v in values.items()}
    assert all(t.everything for t in plan.trades)


def test_a_withdrawal_larger_than_the_holdings_is_refused():
    with pytest.raises(RebalanceError, match="cannot sell"):
        rebalance.withdrawal(ABC, {"A": D("5.00")}, D("5.01"))


def test_a_full_rebalance_fixes_every_level():
    values = {"Stocks/VTI": D("50.00"), "Stocks/VXUS": D("10.00"), "BND": D("40.00")}
    assert moves(rebalance.rebalance(NESTED, values)) == {"Stocks/VTI": D("-20.00"), "Stocks/VXUS": D("20.00")}


def test_a_top_level_only_rebalance_leaves_the_inside_of_sub_pies_alone():
    values = {"Stocks/VTI": D("50.00"), "Stocks/VXUS": D("10.00"), "BND": D("40.00")}
    assert rebalance.rebalance(NESTED, values, top_level_only=True).trades == []
    values = {"Stocks/VTI": D("40.00"), "Stocks/VXUS": D("10.00"), "BND": D("50.00")}
    # Stocks must grow by $10: bought inside it by the deposit rule (VXUS, the underweight one)
    assert moves(rebalance.rebalance(NESTED, values, top_level_only=True)) == {
        "Stocks/VXUS": D("10.00"), "BND": D("-10.00")}


def test_a_rebalance_of_one_pie_by_path_trades_only_inside_it():
    values = {"Stocks/VTI": D("50.00"), "Stocks/VXUS": D("10.00"), "BND": D("10.00")}
    assert moves(rebalance.rebalance(NESTED, values, path="Stocks")) == {
        "Stocks/VTI": D("-20.00"), "Stocks/VXUS": D("20.00")}


def test_a_rebalance_of_an_unknown_pie_is_refused():
    with pytest.raises(RebalanceError, match="no pie at path"):
        rebalance.rebalance(NESTED, {}, path="Bonds")


def test_a_balanced_portfolio_rebalances_to_no_trades():
    assert rebalance.rebalance(ABC, {"A": D("40.00"), "B": D("40.00"), "C": D("20.00")}).trades == []


def test_the_estimated_gain_uses_each_slices_average_cost():
    values = {"A": D("50.00"), "B": D("30.00"), "C": D("20.00")}
    plan = rebalance.rebalance(ABC, values)
    # A cost $40 for $50 of value: selling $10 of it realises 10 - 40 * 10/50 = $2.00
    assert rebalance.estimated_gain(plan, values, {"A": D("40.00")}) == D("2.00")


def test_a_delisted_security_is_left_out_of_deposits_withdrawals_and_rebalances():
    values = {"Stocks/VTI": D("30.00"), "Stocks/VXUS": D("10.00"), "BND": D("60.00")}
    without_vxus = rebalance.Tree(NESTED, exclude=frozenset({"VXUS"}))
    assert without_vxus.paths == ["Stocks/VTI", "BND"] and without_vxus.pies == {"", "Stocks"}
    # VXUS was the most underweight: the deposit goes to the tradable slices instead
    assert moves(rebalance.deposit(without_vxus, values, D("20.00"))) == {"Stocks/VTI": D("20.00")}
    # Stocks counts VTI alone (30.00 of its 60%): BND is the more overweight
    assert moves(rebalance.withdrawal(without_vxus, values, D("10.00"))) == {"BND": D("-10.00")}
    plan = rebalance.rebalance(without_vxus, values)
    assert "Stocks/VXUS" not in moves(plan) and plan.buys == plan.sells
    # a sub-pie with nothing tradable is out of the tree; a tree with nothing tradable buys nothing
    no_stocks = rebalance.Tree(NESTED, exclude=frozenset({"VTI", "VXUS"}))
    assert (no_stocks.paths, no_stocks.pies) == (["BND"], {""})
    assert moves(rebalance.deposit(no_stocks, values, D("20.00"))) == {"BND": D("20.00")}
    nothing = rebalance.deposit(rebalance.Tree(ABC, exclude=frozenset("ABC")), {}, D("20.00"))
    assert (nothing.trades, nothing.left_out) == ([], D("20.00"))
    with pytest.raises(RebalanceError, match="cannot sell"):
        rebalance.withdrawal(rebalance.Tree(ABC, exclude=frozenset("ABC")), {"A": D("5.00")}, D("1.00"))


def test_fractions_of_a_cent_are_refused():
    with pytest.raises(RebalanceError):
        rebalance.deposit(ABC, {}, D("1.005"))


def test_leftover_cents_go_to_the_largest_remainders_then_the_earlier_slice():
    assert rebalance.fill(10, [0, 0, 0], [34, 33, 33]) == [4, 3, 3]
    assert rebalance.fill(1, [0, 0], [50, 50]) == [1, 0]


# ---------------------------------------------------------------- the independent optimum


def optimum(amount: int, values: list[int], targets: list[int], *, sell: bool) -> np.ndarray:
    """Minimise sum_j (v_j +- a_j - t_j X)^2 / t_j over a >= 0 (a <= v on a sell), sum a = amount,
    with scipy: a bounded least-squares solve (BVLS) finds the active set, then the
    equality-constrained problem on the free variables is solved exactly (its KKT system)."""
    v = np.array(values, float)
    t = np.array(targets, float) / 100
    sign = -1 if sell else 1
    scale = max(v.sum(), amount, 1.0)
    vs, a_total = v / scale, amount / scale
    c = sign * (t * (vs.sum() + sign * a_total) - vs)  # each slice's gap to target
    w = 1 / np.sqrt(t)
    penalty = 1e3
    matrix = np.vstack([np.diag(w), penalty * np.ones(len(v))])
    rhs = np.append(w * c, penalty * a_total)
    upper = np.maximum(vs, 1e-300) if sell else np.full(len(v), np.inf)
    found = lsq_linear(matrix, rhs, bounds=(np.zeros(len(v)), upper), method="bvls", tol=1e-15).x
    free = found > 1e-12
    x = np.zeros(len(v))
    while free.any():  # polish: the equality-constrained optimum on the free set, exactly
        n = int(free.sum())
        kkt = np.zeros((n + 1, n + 1))
        kkt[:n, :n] = np.diag(2 / t[free])
        kkt[:n, n] = 1
        kkt[n, :n] = 1
        x[:] = 0
        x[free] = np.linalg.solve(kkt, np.append(2 * c[free] / t[free], a_total))[:n]
        if (x >= 0).all():
            break
        free &= x > 0  # a variable the solver left free but that would go negative is at its bound
    return x * scale


def pies_of(node: rebalance.Node):
    yield node
    for child in node.children:
        if child is not None:
            yield from pies_of(child)


def per_slice(node: rebalance.Node, leaf_cents: dict[str, int]) -> list[int]:
    """What each slice of ``node`` received, a sub-pie counting the sum of its securities."""
    return [sum(c for p, c in leaf_cents.items() if p == at or p.startswith(at + "/")) for at in node.paths]


def assert_each_pie_is_optimal(tree: PieSpec, values: dict[str, Decimal], plan: rebalance.Plan, *, sell: bool):
    root = rebalance.build(tree, values)
    got = {t.path: int(t.amount * 100) for t in plan.trades}
    for node in pies_of(root):
        amounts = per_slice(node, got)
        best = optimum(sum(amounts), node.values, node.targets, sell=sell)
        assert max(abs(a - b) for a, b in zip(amounts, best, strict=True)) <= 1.0 + 1e-6, (node.path, amounts, best)


# ---------------------------------------------------------------- property tests


@st.composite
def trees(draw, depth: int = 0) -> PieSpec:
    n = draw(st.integers(1, 8))
    cuts = sorted(draw(st.lists(st.integers(1, 99), min_size=n - 1, max_size=n - 1, unique=True)))
    targets = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    slices = []
    for i, target in enumerate(targets):
        if depth < 5 and draw(st.integers(0, 3)) == 0:
            slices.append({"target": target, "pie": draw(trees(depth + 1)).model_dump() | {"name": f"P{i}"}})
        else:
            slices.append({"target": target, "symbol": f"S{i}"})
    return PieSpec.model_validate({"name": f"D{depth}", "slices": slices})


money = st.decimals(min_value=0, max_value=D("10000000.00"), places=2, allow_nan=False, allow_infinity=False)
small_or_large = st.one_of(st.just(D("0.00")), st.decimals(min_value=0, max_value=D("100.00"), places=2), money)


@st.composite
def portfolios(draw):
    tree = draw(trees())
    paths = rebalance.Tree(tree).paths
    values = {p: draw(small_or_large) for p in paths}
    return tree, values


def total(values: dict[str, Decimal]) -> Decimal:
    return sum(values.values(), D("0.00"))


@PROPERTY
@given(portfolios(), money)
def test_a_deposit_only_buys_and_with_what_is_left_out_sums_exactly_to_the_cash(portfolio, amount):
    tree, values = portfolio
    plan = rebalance.deposit(tree, values, amount)
    assert all(t.side is Side.BUY and t.amount >= 1 and t.amount == t.amount.quantize(CENT) for t in plan.trades)
    assert plan.buys + plan.left_out == amount


@SOLVER
@given(portfolios(), money)
def test_a_deposit_matches_the_solvers_optimum_in_every_pie_to_the_cent(portfolio, amount):
    tree, values = portfolio
    plan = rebalance.deposit(tree, values, amount, min_buy=D(0))
    assert plan.buys == amount
    assert_each_pie_is_optimal(tree, values, plan, sell=False)


@PROPERTY
@given(portfolios(), st.data())
def test_a_withdrawal_only_sells_never_more_than_a_slice_holds_and_sums_exactly(portfolio, data):
    tree, values = portfolio
    amount = data.draw(st.decimals(min_value=0, max_value=total(values), places=2))
    plan = rebalance.withdrawal(tree, values, amount)
    assert all(t.side is Side.SELL and CENT <= t.amount <= values[t.path] for t in plan.trades)
    assert all(t.everything == (t.amount == values[t.path]) for t in plan.trades)
    assert plan.sells == amount


@SOLVER
@given(portfolios(), st.data())
def test_a_withdrawal_matches_the_solvers_optimum_in_every_pie_to_the_cent(portfolio, data):
    tree, values = portfolio
    amount = data.draw(st.decimals(min_value=0, max_value=total(values), places=2))
    assert_each_pie_is_optimal(tree, values, rebalance.withdrawal(tree, values, amount), sell=True)


@PROPERTY
@given(portfolios())
def test_after_a_rebalance_every_slice_at_every_level_is_within_a_cent_of_target(portfolio):
    tree, values = portfolio
    plan = rebalance.rebalance(tree, values, min_buy=D(0))
    assert plan.buys == plan.sells
    after = {p: v + moves(plan).get(p, 0) for p, v in values.items()}
    assert all(v >= 0 for v in after.values())
    for node in pies_of(rebalance.build(tree, after)):
        for value, target in zip(node.values, node.targets, strict=True):
            assert abs(D(value) - D(node.value) * target / 100) < 1  # in cents


@PROPERTY
@given(portfolios())
def test_a_rebalance_never_both_buys_and_sells_one_slice_and_drops_only_buys_under_a_dollar(portfolio):
    tree, values = portfolio
    exact = moves(rebalance.rebalance(tree, values, min_buy=D(0)))
    plan = rebalance.rebalance(tree, values)
    assert len({t.path for t in plan.trades}) == len(plan.trades)
    assert moves(plan) == {p: m for p, m in exact.items() if m < 0 or m >= 1}
    assert plan.left_out == sum((m for m in exact.values() if 0 < m < 1), D("0.00"))


@PROPERTY
@given(portfolios())
def test_a_top_level_only_rebalance_puts_every_top_level_slice_within_a_cent(portfolio):
    tree, values = portfolio
    plan = rebalance.rebalance(tree, values, top_level_only=True, min_buy=D(0))
    after = {p: v + moves(plan).get(p, 0) for p, v in values.items()}
    root = rebalance.build(tree, after)
    assert root.value == rebalance.build(tree, values).value
    for value, target in zip(root.values, root.targets, strict=True):
        assert abs(D(value) - D(root.value) * target / 100) < 1


@PROPERTY
@given(trees(), money)
def test_a_first_deposit_puts_every_slice_within_a_cent_of_its_target_share(tree, amount):
    plan = rebalance.deposit(tree, {}, amount, min_buy=D(0))
    for node in pies_of(rebalance.build(tree, {t.path: t.amount for t in plan.trades})):
        for value, target in zip(node.values, node.targets, strict=True):
            assert abs(D(value) - D(node.value) * target / 100) < 1
