-- A window's rows are written by its own set-based statements (freeze, allocation) from the
-- window's intents: per-row foreign-key checks on millions of rows cost more than the
-- statements themselves, so these references are kept by construction, not by triggers.
ALTER TABLE fills DROP CONSTRAINT IF EXISTS fills_intent_id_fkey;
ALTER TABLE fills DROP CONSTRAINT IF EXISTS fills_window_id_fkey;
ALTER TABLE intents DROP CONSTRAINT IF EXISTS intents_window_id_fkey;
