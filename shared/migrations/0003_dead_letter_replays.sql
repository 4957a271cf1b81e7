-- Dead letters an operator can replay (shared/dead_letters.py): the queue that refused the
-- message (a replay goes to it alone), and when it was replayed (once per dead letter). Rows
-- refused before this migration have no queue; the service finds it from its routes.
ALTER TABLE dead_letters ADD COLUMN queue text;
ALTER TABLE dead_letters ADD COLUMN replayed_at timestamptz;
CREATE INDEX dead_letters_waiting ON dead_letters (id) WHERE replayed_at IS NULL;
