-- How many accounts each of a window's fills batches holds (the setting when it was
-- allocated): an account's batch is its rank among the window's accounts divided by it. The
-- freeze of a later window counts the shares an earlier one sold as gone until the ledger has
-- booked the batch of the account that sold them (store.freeze_and_fund, "unbooked").
-- Windows allocated before this column have none: their sells count as booked, as before.
ALTER TABLE windows ADD COLUMN batch_accounts int CHECK (batch_accounts > 0);
