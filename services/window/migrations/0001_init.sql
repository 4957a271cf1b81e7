-- Trade windows: the intents collected, the windows they were frozen into, the net orders
-- sent to the venue with their executions, and the exact allocation back to each intent.

-- A window is closed ('executing': its net orders are at the venue), then 'allocated' once
-- the executions came back and were allocated to its intents.
CREATE TABLE windows (
    window_id    uuid PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('executing', 'allocated')),
    closed_at    timestamptz NOT NULL,
    executed_at  timestamptz,
    allocated_at timestamptz,
    -- intents, accounts, and per security: gross buy/sell, net, price, execution, residue
    summary      jsonb
);

-- Every intent received. A pending intent waits for the next window; closing a window
-- freezes all pending intents into it; allocation marks them filled.
CREATE TABLE intents (
    intent_id  uuid PRIMARY KEY,
    batch_id   uuid NOT NULL,
    account_id text NOT NULL,
    symbol     text NOT NULL,
    side       text NOT NULL CHECK (side IN ('buy', 'sell')),
    amount     numeric(16, 2) CHECK (amount > 0),
    quantity   numeric(20, 5) CHECK (quantity > 0),
    source     text NOT NULL,
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'frozen', 'filled', 'rejected')),
    -- deferred: a close freezes the intents and inserts their window in one transaction
    window_id  uuid REFERENCES windows (window_id) DEFERRABLE INITIALLY DEFERRED,
    reason     text,
    created_at timestamptz NOT NULL,
    CHECK ((amount IS NULL) <> (quantity IS NULL)),
    CHECK (status IN ('pending', 'rejected') OR window_id IS NOT NULL)
);
CREATE INDEX intents_pending ON intents (created_at, intent_id) WHERE status = 'pending';
CREATE INDEX intents_window ON intents (window_id) WHERE window_id IS NOT NULL;

-- One net order per security per window, and what the venue executed for it.
CREATE TABLE orders (
    window_id uuid NOT NULL REFERENCES windows (window_id),
    symbol    text NOT NULL,
    side      text NOT NULL CHECK (side IN ('buy', 'sell')),
    notional  numeric(16, 2) NOT NULL CHECK (notional >= 0),
    executed_quantity numeric(20, 5),
    executed_price    numeric,
    executed_amount   numeric(16, 2),
    PRIMARY KEY (window_id, symbol)
);

-- Each intent's share of its window's execution.
CREATE TABLE fills (
    intent_id  uuid PRIMARY KEY REFERENCES intents (intent_id),
    window_id  uuid NOT NULL REFERENCES windows (window_id),
    account_id text NOT NULL,
    symbol     text NOT NULL,
    side       text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity   numeric(20, 5) NOT NULL CHECK (quantity >= 0),
    amount     numeric(16, 2) NOT NULL CHECK (amount > 0),
    price      numeric NOT NULL CHECK (price > 0)
);
CREATE INDEX fills_window ON fills (window_id);

-- What the firm keeps (positive) or supplies (negative) per security of a window so that
-- the window's ledger entry balances: the rounding residue, never lost.
CREATE TABLE residues (
    window_id uuid NOT NULL REFERENCES windows (window_id),
    symbol    text NOT NULL,
    quantity  numeric(20, 5) NOT NULL,
    amount    numeric(16, 2) NOT NULL,
    PRIMARY KEY (window_id, symbol)
);
