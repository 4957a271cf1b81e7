-- The last price the window funded an order's intents at, and whether the order carries
-- price limits around it (it has a sell or a share intent: services/window/domain.py
-- ``net_orders``). Funding done again later in the window (after a halt or the ledger's
-- answer) uses the same price.
ALTER TABLE orders ADD COLUMN last_price numeric CHECK (last_price > 0);
ALTER TABLE orders ADD COLUMN limited boolean NOT NULL DEFAULT false;
