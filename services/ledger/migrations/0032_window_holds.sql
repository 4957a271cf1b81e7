-- Cash held for a trade window between its freeze and the booking of its fills
-- (`ledger.window.hold`): per account, what its funded buys take from its own cash. A
-- withdrawal counts it as spent (docs/services/ledger.md, "Cash held for a window"). An
-- account's hold is released when its batch of the window's fills is booked; the rest with
-- the window's last batch, or by `ledger.window.release` when the window books nothing.
CREATE TABLE window_holds (
    account_id text NOT NULL,
    window_id  uuid NOT NULL,
    amount     numeric(16, 2) NOT NULL CHECK (amount >= 0),
    held_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, window_id)
);
CREATE INDEX window_holds_window ON window_holds (window_id);
