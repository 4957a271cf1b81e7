-- Cash an account's buys in a window hold until the ledger has booked that window's fills
-- (its `ledger.cash.changed` with cause `fill` for the window): the next window funds only
-- cash less these, so two windows closed before the first is booked never spend the same
-- cash. Set at the freeze from the funded buys, replaced at the allocation by the buys'
-- fills, removed when the ledger reports the fills booked.
CREATE TABLE reservations (
    account_id text NOT NULL,
    window_id  uuid NOT NULL,
    amount     numeric(16, 2) NOT NULL CHECK (amount > 0),
    PRIMARY KEY (account_id, window_id)
);
