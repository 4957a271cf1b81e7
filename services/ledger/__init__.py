"""Ledger: the book of record (accounts, double-entry journal of cash and positions)."""
