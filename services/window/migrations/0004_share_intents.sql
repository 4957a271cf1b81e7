-- Share-quantity intents (customer orders by shares, sells of a whole holding).
-- What a window funded of a share intent: its quantity, a sell limited to the shares held.
ALTER TABLE intents ADD COLUMN funded_quantity numeric(20, 5) CHECK (funded_quantity > 0);
-- The net of a window's share intents per security, signed (positive buys).
ALTER TABLE orders ADD COLUMN shares numeric(20, 5) NOT NULL DEFAULT 0;
-- A sell limited to the shares left, or a share intent of a tiny quantity, can settle for
-- $0.00 (its shares still move; the firm's residue balances the cents).
ALTER TABLE fills DROP CONSTRAINT IF EXISTS fills_amount_check;
ALTER TABLE fills ADD CONSTRAINT fills_amount_check CHECK (amount >= 0);
-- The shares the account held of a sell's security when its window froze it (the ledger's
-- positions as last reported): sells deliver at most that, and a replay of the allocation
-- reads it from here, not from positions that have moved since.
ALTER TABLE intents ADD COLUMN held numeric(20, 5);
-- The side the venue executed on: with shares in the order, that of the whole net at the
-- execution price, which may differ from the dollar net's side.
ALTER TABLE orders ADD COLUMN executed_side text CHECK (executed_side IN ('buy', 'sell'));
