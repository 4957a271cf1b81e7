-- A withdrawal looks up the account's recent deposits (those still on hold).
CREATE INDEX funding_deposits_by_account ON funding (account_id, booked_at) WHERE kind = 'deposit';
