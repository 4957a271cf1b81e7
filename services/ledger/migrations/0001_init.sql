-- The book of record. Postings are append-only; every entry balances per asset.
--
-- Sign convention: a posting's amount is the change in what that book holds of the asset
-- (positive = holds more). Books: customer:<account>:cash (USD),
-- customer:<account>:securities (one asset per ticker), firm:bank (the outside world's side
-- of deposits and withdrawals), firm:street (the venue's side of executions),
-- firm:residue (rounding residue of allocations, the firm's own).

CREATE TABLE accounts (
    account_id text PRIMARY KEY,
    kind       text NOT NULL,
    plan       text NOT NULL,
    opened_at  timestamptz NOT NULL,
    -- bumped by every booking that touches the account; events carry it so consumers can
    -- ignore stale updates
    version    bigint NOT NULL DEFAULT 0
);

CREATE TABLE entries (
    entry_id       bigserial PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'fill')),
    reference      text NOT NULL,
    account_id     text REFERENCES accounts (account_id),
    correlation_id text,
    booked_at      timestamptz NOT NULL,
    UNIQUE (kind, reference)
);

CREATE TABLE postings (
    entry_id bigint NOT NULL REFERENCES entries (entry_id),
    book     text NOT NULL,
    asset    text NOT NULL,
    amount   numeric(30, 5) NOT NULL CHECK (amount <> 0)
);
CREATE INDEX postings_entry ON postings (entry_id);
CREATE INDEX postings_book ON postings (book, asset);

-- Running balances per (book, asset), maintained in the same statement batch as postings.
CREATE TABLE balances (
    book   text NOT NULL,
    asset  text NOT NULL,
    amount numeric(30, 5) NOT NULL,
    PRIMARY KEY (book, asset)
);

-- Funding events booked or refused, keyed by the bank's id (the idempotency key).
CREATE TABLE funding (
    funding_id uuid PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('deposit', 'withdrawal')),
    account_id text NOT NULL REFERENCES accounts (account_id),
    amount     numeric(14, 2) NOT NULL,
    entry_id   bigint NOT NULL REFERENCES entries (entry_id),
    booked_at  timestamptz NOT NULL
);

-- Last line of defence: an INSERT whose entries do not sum to zero per asset fails.
CREATE FUNCTION postings_must_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows GROUP BY entry_id, asset HAVING sum(amount) <> 0) THEN
        RAISE EXCEPTION 'unbalanced journal entry';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER postings_balanced AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION postings_must_balance();

-- The journal is append-only: corrections are new, reversing entries.
CREATE FUNCTION journal_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the journal is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();
