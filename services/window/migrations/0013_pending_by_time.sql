-- The intents waiting for a window are found by time alone: a freeze takes those submitted
-- before its window started. Keyed by (created_at, intent_id), every intent went to a random
-- place in the index (intent ids are random); keyed by created_at, a batch's intents share
-- one key and the index grows at its end (docs/benchmarks.md, tenth session).
DROP INDEX intents_pending;
CREATE INDEX submitted_intents_pending ON submitted_intents (created_at) WHERE status = 'pending';
