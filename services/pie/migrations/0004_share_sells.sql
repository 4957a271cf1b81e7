-- Sells of a whole holding go to the window as share quantities (the shares held), not as
-- dollars sized at the last price: a dollar sell could need more shares than the slice holds
-- when the price falls before the window.
ALTER TABLE intents ADD COLUMN quantity numeric(20, 5) CHECK (quantity > 0);
ALTER TABLE intents ALTER COLUMN amount DROP NOT NULL;
ALTER TABLE intents ADD CONSTRAINT intents_amount_or_quantity CHECK ((amount IS NULL) <> (quantity IS NULL));

-- Requests to raise cash by sells (the margin service's liquidations), once per request id.
CREATE TABLE cash_requests (
    request_id uuid PRIMARY KEY,
    account_id text NOT NULL REFERENCES accounts (account_id),
    amount     numeric(16, 2) NOT NULL CHECK (amount > 0),
    planned    numeric(16, 2) NOT NULL,
    batch_id   uuid,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL
);
