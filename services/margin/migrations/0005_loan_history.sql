-- A day's interest is on the loan as it was at the day's end, not as it is when the schedule
-- accrues the day (after midnight, or days later after an outage): every booked loan change
-- (ledger.loan.changed), by the account's ledger version. The loans of before this
-- migration count from the start of time.
CREATE TABLE loan_history (
    account_id text NOT NULL,
    version    bigint NOT NULL,
    loan       numeric(20, 2) NOT NULL,
    booked_at  timestamptz NOT NULL,
    PRIMARY KEY (account_id, version)
);
INSERT INTO loan_history (account_id, version, loan, booked_at)
SELECT account_id, loan_version, loan, '-infinity' FROM accounts WHERE loan <> 0;
