-- The fills batches of a window the ledger has booked (one row per `ledger.fills.booked`),
-- so that the window knows when its last batch is in the books: `m1 window list` and the
-- overdue-window watch tell an allocated window still waiting for the ledger from a
-- finished one. Windows allocated before this table existed are not tracked
-- (`booking_tracked` false): whether their batches were booked is the ledger's to say
-- (`m1 ledger audit` reports an open clearing book).
CREATE TABLE booked_batches (
    window_id uuid NOT NULL REFERENCES windows,
    batch     int NOT NULL CHECK (batch >= 0),
    booked_at timestamptz NOT NULL,
    PRIMARY KEY (window_id, batch)
);
ALTER TABLE windows ADD COLUMN booking_tracked boolean NOT NULL DEFAULT false;
ALTER TABLE windows ALTER COLUMN booking_tracked SET DEFAULT true;
-- The watch and the list read the windows not finished yet, newest first.
CREATE INDEX windows_closed_at ON windows (closed_at DESC);
