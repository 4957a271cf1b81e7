"""The portfolio table puts every figure under its own column."""

from m1.cli import PORTFOLIO_COLUMNS, portfolio_rows

VIEW = {"account_id": "a", "pie_name": "P", "cash": "12.34", "pending_buys": "10.00", "invested": "100.00",
        "total": "112.34", "slices": [
            {"path": "Stocks", "symbol": None, "depth": 0, "target_pct": "60", "actual_pct": "58.50",
             "value": "58.50", "quantity": None},
            {"path": "Stocks/VTI", "symbol": "VTI", "depth": 1, "target_pct": "100", "actual_pct": "100.00",
             "value": "58.50", "quantity": "0.23400"},
            {"path": "BND", "symbol": "BND", "depth": 0, "target_pct": "40", "actual_pct": "41.50",
             "value": "41.50", "quantity": "0.57241"}]}


def test_slices_show_drift_in_points_and_values_under_value():
    slices, _ = portfolio_rows(VIEW)
    value, drift = PORTFOLIO_COLUMNS.index("value"), PORTFOLIO_COLUMNS.index("drift")
    assert [r[0] for r in slices] == ["Stocks", "  VTI", "BND"]
    assert [r[drift] for r in slices] == ["-1.50", "+0.00", "+1.50"]
    assert [r[value] for r in slices] == ["$58.50", "$58.50", "$41.50"]


def test_cash_pending_and_total_sit_under_the_value_column():
    _, totals = portfolio_rows(VIEW)
    value = PORTFOLIO_COLUMNS.index("value")
    assert [(r[0].strip(), r[value]) for r in totals] == [("cash", "$12.34"), ("of which pending buys", "$10.00"),
                                                          ("total", "$112.34")]
    assert all(len(r) == len(PORTFOLIO_COLUMNS) for r in totals)


def test_shares_held_outside_the_pie_are_listed_with_why_after_the_slices():
    view = {**VIEW, "outside": [
        {"path": "Old/GONE", "symbol": "GONE", "quantity": "2.00000", "value": "20.00", "delisted": "acquired"},
        {"path": "QQQ", "symbol": "QQQ", "quantity": "0.10000", "value": "40.00", "delisted": None}]}
    slices, _ = portfolio_rows(view)
    value, quantity = PORTFOLIO_COLUMNS.index("value"), PORTFOLIO_COLUMNS.index("quantity")
    assert [(r[0], r[value], r[quantity]) for r in slices[3:]] == [
        ("Old/GONE (delisted: acquired)", "$20.00", "2.00000"), ("QQQ (removed from the pie)", "$40.00", "0.10000")]
