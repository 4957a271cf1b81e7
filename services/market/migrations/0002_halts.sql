-- Halts: single securities halted by command, and the market-wide circuit breakers tripped.

CREATE TABLE halts (
    symbol    text PRIMARY KEY,
    reason    text NOT NULL,
    halted_at timestamptz NOT NULL
);

-- A level trips at most once per New York day; ``until`` is when its market-wide halt ends
-- (equal to ``tripped_at`` when it tripped too late in the day to halt).
CREATE TABLE circuit_breakers (
    day        date NOT NULL,
    level      int NOT NULL CHECK (level IN (1, 2, 3)),
    tripped_at timestamptz NOT NULL,
    until      timestamptz NOT NULL,
    PRIMARY KEY (day, level)
);

-- Ordered securities of a window the venue did not trade, and why.
CREATE TABLE halted_orders (
    window_id uuid NOT NULL,
    symbol    text NOT NULL,
    reason    text NOT NULL,
    PRIMARY KEY (window_id, symbol)
);
