-- A window an operator stopped before it sent orders (`m1 window abandon`): its frozen
-- intents went back to pending for the next window, its reservations are gone, and the
-- ledger was asked to release whatever cash it holds for it. `abandoned` is the operator's
-- reason.
ALTER TABLE windows DROP CONSTRAINT windows_status_check;
ALTER TABLE windows ADD CONSTRAINT windows_status_check
    CHECK (status IN ('holding', 'executing', 'allocated', 'abandoned'));
ALTER TABLE windows ADD COLUMN abandoned text;
ALTER TABLE windows ADD COLUMN abandoned_at timestamptz;
