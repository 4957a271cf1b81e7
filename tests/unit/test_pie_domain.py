"""Pie rules: validation, a first deposit split by target, auto-invest, removed slices, the portfolio view.
(Rebalancing against existing holdings: test_pie_rebalance.py.)"""

from __future__ import annotations

import uuid
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.pie import domain, rebalance
from shared.contracts import Fill, PieSpec, Side

D = Decimal
KNOWN = {"VTI", "VXUS", "BND", "BNDX", "VNQ", "AAPL", "MSFT"}


def pie(name: str, *slices: tuple[int, str | PieSpec]) -> PieSpec:
    return PieSpec.model_validate({"name": name, "slices": [
        {"target": t, "symbol": s} if isinstance(s, str) else {"target": t, "pie": s.model_dump()} for t, s in slices
    ]})


SIXTY_FORTY = pie("Balanced", (60, "VTI"), (40, "BND"))
NESTED = pie("Root", (60, pie("Stocks", (50, "VTI"), (50, "VXUS"))), (40, "BND"))


def amounts(trades) -> dict[str, Decimal]:
    return {t.path: t.amount for t in trades}


def split(amount: Decimal, tree: PieSpec) -> dict[str, Decimal]:
    """A first deposit (nothing held), every security's buy including zeros."""
    bought = amounts(rebalance.deposit(tree, {}, amount, min_buy=D(0)).trades)
    return {leaf.path: bought.get(leaf.path, D("0.00")) for leaf in domain.leaves(tree)}


# ---------------------------------------------------------------- validation


def test_a_flat_pie_of_known_symbols_summing_to_100_is_valid():
    assert domain.validate(SIXTY_FORTY, KNOWN) == []


def test_a_nested_pie_is_valid():
    assert domain.validate(NESTED, KNOWN) == []


def test_targets_must_sum_to_exactly_100():
    assert domain.validate(pie("P", (60, "VTI"), (30, "BND")), KNOWN) == ["root pie 'P': targets sum to 90, not 100"]


def test_targets_must_sum_to_100_inside_every_sub_pie():
    errors = domain.validate(pie("P", (50, pie("Inner", (50, "VTI"), (49, "VXUS"))), (50, "BND")), KNOWN)
    assert errors == ["pie Inner: targets sum to 99, not 100"]


def test_a_target_below_one_percent_is_refused():
    errors = domain.validate(pie("P", (100, "VTI"), (0, "BND")), KNOWN)
    assert errors == ["slice BND: target 0% is below the minimum of 1%"]


def test_a_pie_needs_at_least_one_slice():
    assert domain.validate(PieSpec(name="Empty", slices=[]), KNOWN) == ["root pie 'Empty': has no slices, at least 1 needed"]


def test_a_pie_holds_at_most_100_slices():
    many = PieSpec.model_validate({"name": "Many", "slices": [{"target": 1, "symbol": f"S{i}"} for i in range(101)]})
    errors = domain.validate(many, {f"S{i}" for i in range(101)})
    assert "root pie 'Many': has 101 slices, at most 100 allowed" in errors


def test_100_slices_of_one_percent_are_valid():
    full = PieSpec.model_validate({"name": "Full", "slices": [{"target": 1, "symbol": f"S{i}"} for i in range(100)]})
    assert domain.validate(full, {f"S{i}" for i in range(100)}) == []


def test_a_symbol_may_appear_only_once_in_one_pie():
    errors = domain.validate(pie("P", (50, "VTI"), (50, "VTI")), KNOWN)
    assert errors == ["root pie 'P': duplicate symbol VTI"]


def test_the_same_symbol_may_sit_in_two_sub_pies():
    tree = pie("P", (50, pie("A", (100, "VTI"))), (50, pie("B", (100, "VTI"))))
    assert domain.validate(tree, KNOWN) == []


def test_two_sub_pies_of_one_pie_need_different_names():
    tree = pie("P", (50, pie("A", (100, "VTI"))), (50, pie("A", (100, "BND"))))
    assert domain.validate(tree, KNOWN) == ["root pie 'P': duplicate slice name A"]


def test_a_symbol_without_a_market_price_is_refused():
    errors = domain.validate(pie("P", (50, "VTI"), (50, "ZZZ")), KNOWN)
    assert errors == ["slice ZZZ: unknown symbol ZZZ (the market has no price for it)"]


def test_a_sub_pie_name_may_not_contain_a_slash():
    errors = domain.validate(pie("P", (100, pie("A/B", (100, "VTI")))), KNOWN)
    assert errors == ["pie A/B: a pie name may not contain '/'"]


def nest(levels: int) -> PieSpec:
    inner = pie(f"L{levels}", (100, "VTI"))
    for level in range(levels - 1, -1, -1):
        inner = pie(f"L{level}", (100, inner))
    return inner


def test_pies_may_nest_five_levels_below_the_root():
    assert domain.validate(nest(5), KNOWN) == []


def test_a_sixth_level_of_nesting_is_refused():
    errors = domain.validate(nest(6), KNOWN)
    assert errors == ["pie L1/L2/L3/L4/L5/L6: nested 6 levels below the root, at most 5 allowed"]


def test_every_reason_is_reported_at_once():
    tree = pie("P", (70, "VTI"), (0, "ZZZ"), (20, "VTI"), (5, pie("Inner", (40, "BND"))))
    errors = domain.validate(tree, KNOWN)
    assert errors == [
        "root pie 'P': targets sum to 95, not 100",
        "slice ZZZ: target 0% is below the minimum of 1%",
        "slice ZZZ: unknown symbol ZZZ (the market has no price for it)",
        "root pie 'P': duplicate symbol VTI",
        "pie Inner: targets sum to 40, not 100",
    ]


# ---------------------------------------------------------------- a first deposit: split by target


def test_100_dollars_into_five_20_percent_slices_buys_20_each():
    five = pie("Five", *[(20, s) for s in ("VTI", "VXUS", "BND", "BNDX", "VNQ")])
    assert (split(D("100.00"), five)) == {s: D("20.00") for s in ("VTI", "VXUS", "BND", "BNDX", "VNQ")}


def test_a_60_40_pie_splits_100_into_60_and_40():
    assert (split(D("100.00"), SIXTY_FORTY)) == {"VTI": D("60.00"), "BND": D("40.00")}


def test_nested_60_40_with_inner_50_50_gives_30_30_40():
    assert (split(D("100.00"), NESTED)) == {"Stocks/VTI": D("30.00"), "Stocks/VXUS": D("30.00"),
                                                          "BND": D("40.00")}


def test_leftover_cents_go_to_the_largest_remainders():
    thirds = pie("Thirds", (34, "VTI"), (33, "VXUS"), (33, "BND"))
    # 10.00 x 34% = 3.40, 3.30, 3.30: no leftover
    assert (split(D("10.00"), thirds)) == {"VTI": D("3.40"), "VXUS": D("3.30"), "BND": D("3.30")}
    # 0.10 x 34% = 0.034 -> 0.03 (remainder .004); 0.033 -> 0.03 (.003) twice; the cent left -> VTI
    assert (split(D("0.10"), thirds)) == {"VTI": D("0.04"), "VXUS": D("0.03"), "BND": D("0.03")}


def test_a_tie_in_remainders_goes_to_the_earlier_slice_in_the_tree():
    halves = pie("Halves", (50, "VTI"), (50, "BND"))
    assert (split(D("0.01"), halves)) == {"VTI": D("0.01"), "BND": D("0.00")}


def test_the_same_symbol_in_two_sub_pies_gets_two_shares():
    tree = pie("P", (50, pie("A", (100, "VTI"))), (50, pie("B", (100, "VTI"))))
    assert (split(D("25.00"), tree)) == {"A/VTI": D("12.50"), "B/VTI": D("12.50")}


def test_a_split_refuses_fractions_of_a_cent():
    try:
        split(D("1.005"), SIXTY_FORTY)
    except ValueError:
        return
    raise AssertionError("expected ValueError")


@st.composite
def trees(draw, depth: int = 0) -> PieSpec:
    n = draw(st.integers(1, 6))
    cuts = sorted(draw(st.lists(st.integers(1, 99), min_size=n - 1, max_size=n - 1, unique=True)))
    targets = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    slices = []
    for i, target in enumerate(targets):
        if depth < 3 and draw(st.booleans()) and draw(st.booleans()):
            slices.append({"target": target, "pie": draw(trees(depth + 1)).model_dump() | {"name": f"P{i}"}})
        else:
            slices.append({"target": target, "symbol": f"S{i}"})
    return PieSpec.model_validate({"name": f"D{depth}", "slices": slices})


money = st.decimals(min_value=0, max_value=D("10000000.00"), places=2, allow_nan=False, allow_infinity=False)


@given(tree=trees(), amount=money)
def test_a_split_sums_exactly_to_the_amount(tree, amount):
    assert sum(split(amount, tree).values()) == amount


@given(tree=trees(), amount=money)
def test_no_share_is_negative_and_each_is_whole_cents(tree, amount):
    for value in split(amount, tree).values():
        assert value >= 0 and value == value.quantize(D("0.01"))


@given(tree=trees(), amount=money)
def test_each_share_is_within_a_cent_per_level_of_its_exact_target_share(tree, amount):
    depth = {leaf.path: leaf.path.count("/") + 1 for leaf in domain.leaves(tree)}
    weights = {leaf.path: leaf.weight for leaf in domain.leaves(tree)}
    for path, value in split(amount, tree).items():
        assert abs(value - amount * weights[path]) < D("0.01") * depth[path]


@given(tree=trees())
def test_every_tree_is_valid_and_its_weights_sum_to_one(tree):
    assert domain.validate(tree, {f"S{i}" for i in range(6)}) == []
    assert sum(leaf.weight for leaf in domain.leaves(tree)) == 1


# ---------------------------------------------------------------- auto-invest


def plan(**kw):
    args = {"enabled": True, "cash": D("100.00"), "minimum_cash": D("0.00"), "pending_buys": D("0.00")} | kw
    return rebalance.auto_invest(args.pop("pie", SIXTY_FORTY), args.pop("values", {}), **args)


def test_auto_invest_buys_all_investable_cash_by_target():
    buys = plan()
    assert amounts(buys.trades) == {"VTI": D("60.00"), "BND": D("40.00")} and buys.left_out == 0


def test_auto_invest_waits_until_25_dollars_are_investable():
    assert plan(cash=D("24.99")) is None
    assert plan(cash=D("25.00")) is not None


def test_auto_invest_keeps_the_minimum_cash():
    buys = plan(cash=D("150.00"), minimum_cash=D("50.00"))
    assert amounts(buys.trades) == {"VTI": D("60.00"), "BND": D("40.00")}
    assert plan(cash=D("74.99"), minimum_cash=D("50.00")) is None


def test_auto_invest_does_not_spend_cash_already_promised_to_pending_buys():
    assert plan(cash=D("100.00"), pending_buys=D("100.00")) is None
    buys = plan(cash=D("150.00"), pending_buys=D("100.00"), values={"VTI": D("60.00"), "BND": D("40.00")})
    assert amounts(buys.trades) == {"VTI": D("30.00"), "BND": D("20.00")}


def test_auto_invest_buys_the_underweight_slice_of_a_drifted_portfolio():
    buys = plan(cash=D("30.00"), values={"VTI": D("80.00"), "BND": D("20.00")})
    assert amounts(buys.trades) == {"BND": D("30.00")}  # 80 / 50 of 130: VTI is still above its 60%


def test_auto_invest_off_buys_nothing():
    assert plan(enabled=False) is None


def test_auto_invest_without_a_pie_buys_nothing():
    assert plan(pie=None) is None


def test_a_buy_under_one_dollar_is_left_out_and_its_cash_stays():
    tree = pie("P", (97, "VTI"), (3, "BND"))
    buys = plan(pie=tree, cash=D("30.00"))  # BND's share is 0.90
    assert amounts(buys.trades) == {"VTI": D("29.10")} and buys.left_out == D("0.90")


def test_a_slice_is_worth_its_holding_rounded_down_plus_its_pending_intents():
    values = domain.slice_values({"VTI": D("0.33333"), "Bonds/BND": D("1")}, {"VTI": D("3.00"), "BND": D("50")},
                                 {"VTI": D("5.00"), "Bonds/BND": D("-60.00"), "VXUS": D("2.00")})
    assert values == {"VTI": D("5.99"), "Bonds/BND": D("0.00"), "VXUS": D("2.00")}


# ---------------------------------------------------------------- removed slices


def test_a_removed_slices_proceeds_go_to_its_nearest_pie_still_in_the_tree():
    held = ["Stocks/VTI", "Stocks/VXUS", "BND", "Gone/Deeper/X", "Stocks/Old/Y", "OLD"]
    removed = domain.removed_slices(NESTED, held)
    assert removed.sold == {"Gone/Deeper/X": "", "OLD": "", "Stocks/Old/Y": "Stocks"} and removed.moved == {}


TWO_CORES = pie("Two cores", (60, pie("Core", (50, "VTI"), (50, "VXUS"))), (40, pie("Growth", (100, "VTI"))))


def test_moving_a_slice_into_a_sub_pie_moves_its_holding_and_sells_nothing():
    # 60/40 VTI/BND re-set as VTI 60 plus a sub-pie "Bonds" holding BND 100
    moved = pie("Balanced", (60, "VTI"), (40, pie("Bonds", (100, "BND"))))
    assert domain.removed_slices(moved, ["VTI", "BND"]) == domain.Removed(moved={"BND": "Bonds/BND"}, sold={})


def test_moving_every_slice_into_a_renamed_sub_pie_moves_each_to_its_new_path():
    before_held = ["VTI", "Bonds/BND"]
    after = pie("P", (100, pie("Core", (60, "VTI"), (40, "BND"))))
    assert domain.removed_slices(after, before_held) == domain.Removed(
        moved={"Bonds/BND": "Core/BND", "VTI": "Core/VTI"}, sold={})


def test_a_renamed_sub_pie_keeps_its_holding_rather_than_joining_another_slice_of_the_security():
    # Growth renamed Satellite: Growth/VTI goes to the empty Satellite/VTI, not to Core/VTI (first in tree order)
    renamed = pie("Two cores", (60, pie("Core", (50, "VTI"), (50, "VXUS"))), (40, pie("Satellite", (100, "VTI"))))
    removed = domain.removed_slices(renamed, ["Core/VTI", "Core/VXUS", "Growth/VTI"])
    assert removed == domain.Removed(moved={"Growth/VTI": "Satellite/VTI"}, sold={})


def test_two_sub_pies_renamed_pair_their_slices_in_path_order_with_the_new_slices_in_tree_order():
    renamed = pie("Two cores", (60, pie("A", (50, "VTI"), (50, "VXUS"))), (40, pie("B", (100, "VTI"))))
    removed = domain.removed_slices(renamed, ["Core/VTI", "Core/VXUS", "Growth/VTI"])
    assert removed.moved == {"Core/VTI": "A/VTI", "Core/VXUS": "A/VXUS", "Growth/VTI": "B/VTI"}


def test_a_slice_moved_where_every_slice_of_its_security_holds_shares_joins_the_first_in_tree_order():
    merged = pie("Two cores", (60, pie("Core", (50, "VTI"), (50, "VXUS"))), (40, pie("Satellite", (100, "VTI"))))
    removed = domain.removed_slices(merged, ["Core/VTI", "Satellite/VTI", "Growth/VTI"], pending=["Core/VXUS"])
    assert removed.moved == {"Growth/VTI": "Core/VTI"}


def test_only_a_security_gone_from_the_tree_is_sold():
    held = ["Core/VTI", "Core/VXUS", "Growth/VTI"]
    without_vxus = pie("One core", (100, pie("Core", (100, "VTI"))))
    removed = domain.removed_slices(without_vxus, held)
    # Growth is gone but VTI is not: its shares join Core/VTI; VXUS left the tree: sold, for Core
    assert removed == domain.Removed(moved={"Growth/VTI": "Core/VTI"}, sold={"Core/VXUS": "Core"})


def test_a_slice_with_only_pending_intents_moves_and_one_already_being_sold_is_not_sold_twice():
    moved = pie("Balanced", (60, "VTI"), (40, pie("Bonds", (100, "BND"))))
    removed = domain.removed_slices(moved, ["VTI", "VXUS"], pending=["BND", "VXUS"], selling=["VXUS"])
    assert removed == domain.Removed(moved={"BND": "Bonds/BND"}, sold={})


def test_a_tree_names_every_pie_by_its_path():
    assert domain.pie_paths(NESTED) == {"", "Stocks"}


# ---------------------------------------------------------------- portfolio view


PRICES = {"VTI": D("250.00"), "VXUS": D("60.00"), "BND": D("72.50")}


def test_an_empty_portfolio_shows_every_slice_at_zero():
    view = domain.view_slices(NESTED, {}, PRICES)
    assert [(s.path, s.symbol, s.depth, s.value, s.actual_pct, s.quantity) for s in view] == [
        ("Stocks", None, 0, D("0.00"), D("0.00"), None),
        ("Stocks/VTI", "VTI", 1, D("0.00"), D("0.00"), D("0.00000")),
        ("Stocks/VXUS", "VXUS", 1, D("0.00"), D("0.00"), D("0.00000")),
        ("BND", "BND", 0, D("0.00"), D("0.00"), D("0.00000")),
    ]


def test_a_slice_is_valued_at_quantity_times_price_rounded_to_the_nearest_cent():
    # 5.51724 x 72.50 = 399.9999 -> 400.00; 1.00001 x 0.50 = 0.500005 -> 0.50
    view = domain.view_slices(SIXTY_FORTY, {"VTI": D("2.40000"), "BND": D("5.51724")}, PRICES)
    assert {s.path: s.value for s in view} == {"VTI": D("600.00"), "BND": D("400.00")}


def test_a_sub_pie_is_worth_the_sum_of_its_slices_and_percents_are_of_the_parent():
    holdings = {"Stocks/VTI": D("0.12"), "Stocks/VXUS": D("0.5"), "BND": D("0.4")}  # 30.00, 30.00, 29.00
    view = {s.path: s for s in domain.view_slices(NESTED, holdings, PRICES)}
    assert view["Stocks"].value == D("60.00") and view["Stocks"].actual_pct == D("67.42")
    assert view["Stocks/VTI"].actual_pct == D("50.00") and view["Stocks/VTI"].target_pct == 50
    assert view["BND"].actual_pct == D("32.58") and view["BND"].target_pct == 40


def test_invested_is_the_sum_of_the_top_level_slices_and_total_adds_cash():
    holdings = {"Stocks/VTI": D("0.12"), "Stocks/VXUS": D("0.5"), "BND": D("0.4")}
    totals = domain.totals(domain.view_slices(NESTED, holdings, PRICES), D("10.01"))
    assert totals.invested == D("89.00") and totals.total == D("99.01")


# ---------------------------------------------------------------- withdrawals


def test_a_withdrawal_sells_the_ledgers_shortfall_over_its_cash_and_no_more():
    assert domain.withdrawal_need(D("100.00"), cash=D("30.00"), shortfall=D("70.00"),
                                  holdings=D("500")) == domain.WithdrawalNeed(D("70.00"))
    # within the cash, waiting for proceeds to settle: nothing to sell
    assert domain.withdrawal_need(D("50.00"), cash=D("50.00"), shortfall=D("0.00"),
                                  holdings=D("0")) == domain.WithdrawalNeed(D("0.00"))


def test_shares_at_paths_no_longer_in_the_pie_are_held_outside_it_and_count_in_the_totals():
    holdings = {"VTI": D("2.00000"), "BND": D("1.00000"), "Old/GONE": D("3.00000"), "QQQ": D("0.00000")}
    prices = {**PRICES, "GONE": D("10.00")}
    outside = domain.held_outside(SIXTY_FORTY, holdings, prices, {"GONE": "acquired for cash"})
    assert [(h.path, h.symbol, h.quantity, h.value, h.delisted) for h in outside] == [
        ("Old/GONE", "GONE", D("3.00000"), D("30.00"), "acquired for cash")]  # an empty path is left out
    slices = domain.view_slices(SIXTY_FORTY, holdings, prices)
    totals = domain.totals(slices, D("5.00"), outside)
    in_pie = sum(s.value for s in slices if s.depth == 0)
    assert (totals.invested, totals.total) == (in_pie + D("30.00"), in_pie + D("35.00"))
    # without a pie, every holding is outside it
    assert [h.path for h in domain.held_outside(None, holdings, prices, {})] == ["BND", "Old/GONE", "VTI"]


def test_a_withdrawal_above_cash_plus_holdings_is_refused_with_the_figures():
    need = domain.withdrawal_need(D("100.00"), cash=D("30.00"), shortfall=D("70.00"), holdings=D("69.99"))
    assert need.refusal == ("withdrawal of $100.00 exceeds the withdrawable value $99.99 "
                            "(cash $30.00 + investments $69.99)")


def test_a_buy_made_by_order_belongs_to_its_securitys_slice():
    assert domain.slice_for(TWO_CORES, "VXUS") == "Core/VXUS"
    assert domain.slice_for(TWO_CORES, "VTI") == "Core/VTI"  # the first of two
    assert domain.slice_for(TWO_CORES, "QQQ") == "QQQ"  # not a slice: a top-level path of its own
    assert domain.slice_for(None, "VTI") == "VTI"


def order_fill(symbol: str, side: str, quantity: str, amount: str, intent_id: uuid.UUID | None = None) -> Fill:
    return Fill(intent_id=intent_id or uuid.uuid4(), account_id="acct", symbol=symbol, side=Side(side),
                quantity=D(quantity), amount=D(amount), price=D("250.00"))


# Core/VTI 0.12 and Growth/VTI 0.16 shares after a $100 deposit (PRODUCT: a sell is at most the slice's value)
TWO_CORES_HELD = {"Core/VTI": D("0.12000"), "Core/VXUS": D("0.50000"), "Growth/VTI": D("0.16000")}


def test_a_sell_made_by_order_comes_from_the_slices_holding_the_security_in_proportion_to_their_shares():
    taken, rest = domain.sell_slices(TWO_CORES, "VTI", D("0.20000"), TWO_CORES_HELD)
    # 0.2 x 12/28 = 0.085714..., 0.2 x 16/28 = 0.114285...: largest remainder to 1/100,000
    assert taken == {"Core/VTI": D("0.08571"), "Growth/VTI": D("0.11429")} and rest == 0


def test_a_sell_never_takes_more_than_a_slice_holds_and_reports_what_none_holds():
    held = {**TWO_CORES_HELD, "VTI": D("0.01000")}  # a removed top-level VTI slice, not sold yet
    taken, rest = domain.sell_slices(TWO_CORES, "VTI", D("0.30000"), held)
    assert taken == {"Core/VTI": D("0.12000"), "Growth/VTI": D("0.16000"), "VTI": D("0.01000")}
    assert rest == D("0.01000")


def test_an_orders_sell_is_split_into_parts_the_first_keeping_the_fills_intent_id():
    fill = order_fill("VTI", "sell", "0.20000", "50.00")
    parts = domain.order_fill_parts(TWO_CORES, [fill], TWO_CORES_HELD)
    assert [(p.path, p.quantity, p.amount) for p in parts] == [("Core/VTI", D("0.08571"), D("21.43")),
                                                              ("Growth/VTI", D("0.11429"), D("28.57"))]
    assert parts[0].intent_id == fill.intent_id and parts[1].intent_id not in (fill.intent_id, None)
    assert domain.order_fill_parts(TWO_CORES, [fill], TWO_CORES_HELD) == parts  # the same ids every time


def test_an_orders_buy_is_one_part_in_its_securitys_first_slice():
    fill = order_fill("VTI", "buy", "0.10000", "25.00")
    assert domain.order_fill_parts(TWO_CORES, [fill], TWO_CORES_HELD) == [
        domain.FillPart(fill.intent_id, "Core/VTI", "VTI", Side.BUY, D("0.10000"), D("25.00"))]


def test_two_sells_of_one_security_in_a_window_share_the_holdings_and_the_rest_lands_on_the_first_slice():
    first, second = order_fill("VTI", "sell", "0.20000", "50.00"), order_fill("VTI", "sell", "0.10000", "25.00")
    parts = domain.order_fill_parts(TWO_CORES, [first, second], TWO_CORES_HELD)
    assert [(p.path, p.quantity) for p in parts] == [
        ("Core/VTI", D("0.08571")), ("Growth/VTI", D("0.11429")),
        # what is left: 0.03429 and 0.04571, all of it; the 0.02 none holds goes on the first slice
        ("Core/VTI", D("0.05429")), ("Growth/VTI", D("0.04571"))]


def test_shares_a_sell_delivered_beyond_its_slice_come_from_the_other_slices_of_the_security():
    held = {"Core/VTI": D("0.12000"), "Core/VXUS": D("0.50000")}  # Growth/VTI booked down to zero
    taken, missing = domain.take_oversold(TWO_CORES, {"Growth/VTI": D("0.04000")}, held)
    assert taken == {"Core/VTI": D("0.04000")} and missing == {}
    taken, missing = domain.take_oversold(TWO_CORES, {"Growth/VTI": D("0.15000")}, held)
    assert taken == {"Core/VTI": D("0.12000")} and missing == {"VTI": D("0.03000")}


shares = st.integers(min_value=0, max_value=10**7).map(lambda u: D(u).scaleb(-5))


@given(held=st.lists(shares, min_size=1, max_size=6), fraction=st.fractions(min_value=0, max_value=2))
def test_a_sell_is_spread_exactly_never_below_zero(held, fraction):
    tree = pie("P", *[(1 if i else 101 - len(held), pie(f"S{i}", (100, "VTI"))) for i in range(len(held))])
    holdings = {f"S{i}/VTI": q for i, q in enumerate(held)}
    total = sum(held, D(0))
    quantity = (total * fraction.numerator / fraction.denominator).quantize(D("0.00001"))
    taken, rest = domain.sell_slices(tree, "VTI", quantity, holdings)
    assert sum(taken.values(), D(0)) + rest == quantity
    assert all(D(0) < q <= holdings[p] for p, q in taken.items())
    assert rest == max(quantity - total, D(0))


def test_the_paying_security_is_read_from_the_dividends_cause():
    assert domain.dividend_symbol("dividend:BND:2026-11-20") == "BND"
    assert domain.dividend_symbol("fill:x") is None and domain.dividend_symbol("dividend::2026-11-20") is None
