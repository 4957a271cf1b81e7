"""Margin: borrowing power, loans, equity watch, maintenance calls and liquidation intents."""
