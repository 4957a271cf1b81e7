-- A liquidation is closed by its own sells, not by whatever the account sells next
-- (docs/services/margin.md "Calls and liquidation").

-- The pie's answer to the call's pie.cash.raise (pie.cash.raising, request id = call id): the
-- dollars it planned and the batch of its sells (NULL until the answer arrives; a batch NULL
-- with planned 0: the pie had nothing to sell). What the liquidation's sells raised so far.
-- legacy: a call already liquidating when this migration ran, whose answer from the pie was
-- never kept: the account's next sells close it, as before.
ALTER TABLE calls
    ADD COLUMN planned  numeric(20, 2),
    ADD COLUMN batch_id uuid,
    ADD COLUMN raised   numeric(20, 2) NOT NULL DEFAULT 0,
    ADD COLUMN legacy   boolean NOT NULL DEFAULT false;
UPDATE calls SET legacy = true WHERE status = 'liquidating';
CREATE INDEX calls_by_batch ON calls (batch_id) WHERE batch_id IS NOT NULL;

-- The sells the pie submitted at the liquidation priority (pie.intents.submitted, source
-- liquidation) for an account while it has a call liquidating: the liquidation's, found by
-- the call's batch (the pie also covers a negative balance at that priority: not a call's).
CREATE TABLE liquidation_intents (
    intent_id  uuid PRIMARY KEY,
    batch_id   uuid NOT NULL,
    account_id text NOT NULL
);
CREATE INDEX liquidation_intents_by_batch ON liquidation_intents (batch_id);
CREATE INDEX liquidation_intents_by_account ON liquidation_intents (account_id);

-- Sells booked (ledger.fills.booked) that may be a liquidation's and are not counted yet: the
-- account's sells while a call is liquidating (the pie's answer may arrive after the fills),
-- and later fills of a liquidation's intents (sells carried over by a halt). Deleted once
-- counted, or once no liquidation of the account is left waiting for its answer.
CREATE TABLE liquidation_sells (
    window_id  uuid NOT NULL,
    intent_id  uuid NOT NULL,
    account_id text NOT NULL,
    amount     numeric(20, 2) NOT NULL,
    PRIMARY KEY (window_id, intent_id)
);
CREATE INDEX liquidation_sells_by_account ON liquidation_sells (account_id);
