-- A liquidation whose every sell the window rejects for good closes (docs/services/margin.md
-- "Calls and liquidation"): the window's rejections (window.intents.rejected) of an account's
-- intents while it has a call liquidating, matched to the liquidation's batch like its fills.
-- Kept while the intent may be a call's (its batch's intents are kept for good, see 0003);
-- the rest are deleted once no liquidation of the account waits to know its own sells.
CREATE TABLE liquidation_rejections (
    intent_id  uuid PRIMARY KEY,
    account_id text NOT NULL,
    window_id  uuid NOT NULL,
    reason     text NOT NULL
);
CREATE INDEX liquidation_rejections_by_account ON liquidation_rejections (account_id);
