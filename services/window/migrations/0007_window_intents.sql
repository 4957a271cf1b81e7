-- A window takes its intents out of the ones waiting for a window: freezing a million
-- intents by UPDATE rewrote every row and every index entry (about 11 s of the close); moving
-- them (a DELETE, which only marks the rows, and one INSERT in key order) costs a third.
-- `submitted_intents`: as submitted, waiting for a window ('pending'), or cancelled before
-- one. `window_intents`: the intents a window took ('frozen', then filled by their row in
-- `fills'; 'rejected' by the funding or the venue). A carry-over moves intents back.
-- `intents` is both, for reading.
ALTER TABLE intents RENAME TO submitted_intents;
CREATE TABLE window_intents (LIKE submitted_intents INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE window_intents ADD PRIMARY KEY (intent_id);
CREATE INDEX window_intents_window ON window_intents (window_id);
CREATE INDEX window_intents_batch ON window_intents (batch_id);
INSERT INTO window_intents SELECT * FROM submitted_intents WHERE status NOT IN ('pending', 'cancelled');
DELETE FROM submitted_intents WHERE status NOT IN ('pending', 'cancelled');
DROP INDEX intents_window;
-- A carried-over intent moves between the two tables; the reference is kept by construction.
ALTER TABLE carried_over DROP CONSTRAINT IF EXISTS carried_over_intent_id_fkey;
CREATE VIEW intents AS SELECT * FROM submitted_intents UNION ALL SELECT * FROM window_intents;
