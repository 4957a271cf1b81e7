-- A window between its freeze and its orders: 'holding' while the ledger holds the cash its
-- buys take (`ledger.window.hold`); it trades on the ledger's answer (`ledger.window.held`).
ALTER TABLE windows DROP CONSTRAINT windows_status_check;
ALTER TABLE windows ADD CONSTRAINT windows_status_check CHECK (status IN ('holding', 'executing', 'allocated'));
