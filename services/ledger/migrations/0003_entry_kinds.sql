-- Entry kinds grow with the ledger (fees, dividends, interest, loans...): the set is checked
-- in code (services/ledger/domain.py) instead of by a constraint every new kind must alter.
ALTER TABLE entries DROP CONSTRAINT IF EXISTS entries_kind_check;
