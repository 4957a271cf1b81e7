-- An ordered security the venue cannot trade at all (unknown, or no longer active): refused
-- on its own, so the rest of the window still trades. Kept beside the halted ones, so that
-- the same window's orders sent again get the same answer.
ALTER TABLE halted_orders ADD COLUMN refused boolean NOT NULL DEFAULT false;
