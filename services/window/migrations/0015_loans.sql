-- Each account's margin loan as the ledger last reported it (`ledger.loan.changed`, older
-- versions ignored): equity for the $25,000 rule of the schedule is cash plus positions at
-- the last prices less the loan.
CREATE TABLE loans (
    account_id text PRIMARY KEY,
    loan       numeric(16, 2) NOT NULL CHECK (loan >= 0),
    version    bigint NOT NULL
);
