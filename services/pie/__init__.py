"""Pie: each account's target portfolio (a tree of pies and securities) and auto-invest."""
