-- Withdrawals larger than the account's cash wait here while the pie service sells the
-- shortfall; they are paid out (status 'paid', a normal withdrawal entry and funding row)
-- once the account's cash covers them after its fills, or rejected with the pie's reason.
CREATE TABLE pending_withdrawals (
    withdrawal_id uuid PRIMARY KEY,
    account_id    text NOT NULL REFERENCES accounts (account_id),
    amount        numeric(14, 2) NOT NULL CHECK (amount > 0),
    requested_at  timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'rejected')),
    reason        text
);
CREATE INDEX pending_withdrawals_open ON pending_withdrawals (account_id, requested_at) WHERE status = 'pending';
