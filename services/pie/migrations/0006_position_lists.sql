-- Per account, the version of the newest complete list of positions applied (a
-- `ledger.fills.booked` lists every security the account holds: one it leaves out is not
-- held at that version). A late, older list may only add a row for a symbol when it is
-- newer than that; before, it could add back a security the account had sold out of at a
-- newer version, and the pie would sell shares the account does not hold. Accounts get a row
-- with their next list.
CREATE TABLE position_lists (
    account_id text PRIMARY KEY,
    version    bigint NOT NULL
);
