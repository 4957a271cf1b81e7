-- The sells submitted for a request to raise cash, sent with the answer (pie.cash.raising):
-- the margin service learns a liquidation's own sells from it instead of reading every
-- batch of intents. Requests of before this migration answer again with none.
ALTER TABLE cash_requests ADD COLUMN intent_ids uuid[] NOT NULL DEFAULT '{}';
