-- A window's fills are booked a batch at a time (thousands of accounts, tens of thousands
-- of rows per statement). A foreign key is checked row by row, by a query each: on these
-- tables the checks cost more than the inserts. The references are kept by construction
-- (every row is written in the transaction that inserts its entry, with its accounts
-- locked and checked), and `m1 ledger audit` checks them over the whole journal.
ALTER TABLE postings DROP CONSTRAINT IF EXISTS postings_entry_id_fkey;
ALTER TABLE trades DROP CONSTRAINT IF EXISTS trades_entry_id_fkey;
ALTER TABLE trades DROP CONSTRAINT IF EXISTS trades_account_id_fkey;
ALTER TABLE lots DROP CONSTRAINT IF EXISTS lots_account_id_fkey;
ALTER TABLE realised_gains DROP CONSTRAINT IF EXISTS realised_gains_account_id_fkey;
ALTER TABLE realised_gains DROP CONSTRAINT IF EXISTS realised_gains_lot_id_fkey;
