-- Per account, the version of the newest complete list of positions applied (a
-- `ledger.fills.booked` lists every security the account holds: one it leaves out is not
-- held at that version, and its row goes to zero; before, a sold-out position kept its old
-- quantity here, and a sell order of shares no longer held was accepted). A late, older
-- list may only add a row for a symbol when it is newer than that. Accounts get a row with
-- their next list.
CREATE TABLE position_lists (
    account_id text PRIMARY KEY,
    version    bigint NOT NULL
);
