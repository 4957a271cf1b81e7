-- Loans, calls, per-security requirements and interest (docs/services/margin.md).

-- The account's loan as the ledger booked it (ledger.loan.changed), with the ledger version
-- of that booking; loans approved here but not booked yet; interest accrued, not yet charged.
ALTER TABLE accounts
    ADD COLUMN loan             numeric(20, 2) NOT NULL DEFAULT 0,
    ADD COLUMN loan_version     bigint NOT NULL DEFAULT 0,
    ADD COLUMN pending_loans    numeric(20, 2) NOT NULL DEFAULT 0,
    ADD COLUMN interest_accrued numeric(24, 10) NOT NULL DEFAULT 0,
    -- Kept exact (unconstrained numeric) and moved by every price tick and position change
    -- by the change alone, so one tick touches each holder's row once instead of summing
    -- all its positions again: sum of quantity x price, and of quantity x price x the
    -- security's maintenance rate. Recomputed from the positions at every start.
    ADD COLUMN market_value     numeric NOT NULL DEFAULT 0,
    ADD COLUMN requirement      numeric NOT NULL DEFAULT 0;
-- The equity watch looks only at accounts with a loan.
CREATE INDEX accounts_with_loan ON accounts (account_id) WHERE loan > 0;
-- One price tick finds every account holding the security through this index.
CREATE INDEX positions_by_symbol ON positions (symbol, account_id) WHERE quantity <> 0;

-- Borrow requests approved here and sent to the ledger (DrawLoan), until it books them.
CREATE TABLE loan_requests (
    loan_id      uuid PRIMARY KEY,
    account_id   text NOT NULL,
    amount       numeric(20, 2) NOT NULL CHECK (amount > 0),
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'booked')),
    requested_at timestamptz NOT NULL
);

-- A security's own requirements; NULL: the house default.
CREATE TABLE securities (
    symbol      text PRIMARY KEY,
    initial     numeric(5, 4) CHECK (initial BETWEEN 0 AND 1),
    maintenance numeric(5, 4) CHECK (maintenance BETWEEN 0 AND 1)
);

-- Maintenance calls. open -> met (equity back at the requirement) or liquidating (deadline
-- passed, or the hard floor) -> liquidated (the sells filled and repaid the loan).
CREATE TABLE calls (
    call_id            uuid PRIMARY KEY,
    account_id         text NOT NULL,
    status             text NOT NULL CHECK (status IN ('open', 'met', 'liquidating', 'liquidated')),
    amount_due         numeric(20, 2) NOT NULL CHECK (amount_due > 0),
    market_value       numeric(20, 2) NOT NULL,
    equity             numeric(20, 2) NOT NULL,
    requirement        numeric(20, 2) NOT NULL,
    loan               numeric(20, 2) NOT NULL,
    deadline           timestamptz NOT NULL,
    issued_at          timestamptz NOT NULL,
    liquidation_amount numeric(20, 2),
    liquidation_reason text,
    closed_at          timestamptz
);
-- At most one call in progress per account.
CREATE UNIQUE INDEX calls_one_open ON calls (account_id) WHERE status IN ('open', 'liquidating');
CREATE INDEX calls_deadline ON calls (deadline) WHERE status = 'open';

-- Days whose interest has been accrued (the job runs once per day), and monthly charges.
CREATE TABLE interest_days (
    day              date PRIMARY KEY,
    accrued_accounts int NOT NULL,
    charged_accounts int NOT NULL DEFAULT 0,
    charged          numeric(20, 2) NOT NULL DEFAULT 0,
    done_at          timestamptz NOT NULL
);
CREATE TABLE interest_charges (
    account_id text NOT NULL,
    period     text NOT NULL,
    charge_id  uuid NOT NULL,
    amount     numeric(20, 2) NOT NULL,
    charged_at timestamptz NOT NULL,
    PRIMARY KEY (account_id, period)
);
