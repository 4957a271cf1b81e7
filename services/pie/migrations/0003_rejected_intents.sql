-- Intents a window dropped for good (for example a buy under $1 after funding) stop counting
-- as pending buys, so their cash is free again.
ALTER TABLE intents DROP CONSTRAINT intents_status_check;
ALTER TABLE intents ADD CONSTRAINT intents_status_check
    CHECK (status IN ('pending', 'filled', 'cancelled', 'rejected'));
ALTER TABLE intents ADD COLUMN reason text;
