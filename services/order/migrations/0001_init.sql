-- The order service's projection of the ledger's accounts: which accounts exist, their kind
-- and plan. Order validation reads it (an order for an unknown account is refused) without
-- ever asking the ledger. Fed by ledger.account.opened on the order.ledger queue.
--
-- The orders themselves (orders) are in 0002_orders.sql.

CREATE TABLE accounts (
    account_id text PRIMARY KEY,
    kind       text NOT NULL,
    plan       text NOT NULL,
    opened_at  timestamptz NOT NULL
);
