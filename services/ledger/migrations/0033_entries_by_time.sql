-- The daily job values every account as of the day's end: today's balances less what was
-- booked since (docs/services/ledger.md "The daily job"); this finds the entries booked
-- after a moment without reading them all.
CREATE INDEX entries_booked_at ON entries (booked_at);
