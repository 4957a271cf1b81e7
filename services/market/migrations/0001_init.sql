-- Prices (market data) and the venue simulator's executions.

-- The current price of every security the venue knows. An inactive security (delisted, no
-- longer tradable) keeps its last price but is not traded and not published.
CREATE TABLE prices (
    symbol     text PRIMARY KEY,
    name       text,
    price      numeric NOT NULL CHECK (price > 0 AND scale(price) <= 6),
    active     boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL
);

-- One fill per security per window: a window's net orders are executed once.
CREATE TABLE executions (
    window_id   uuid NOT NULL,
    symbol      text NOT NULL,
    side        text NOT NULL CHECK (side IN ('buy', 'sell')),
    notional    numeric(16, 2) NOT NULL CHECK (notional >= 0),
    quantity    numeric(20, 5) NOT NULL CHECK (quantity >= 0),
    price       numeric NOT NULL CHECK (price > 0),
    amount      numeric(16, 2) NOT NULL CHECK (amount >= 0),
    executed_at timestamptz NOT NULL,
    PRIMARY KEY (window_id, symbol)
);
