-- Why the venue refused an ordered security outright (unknown, inactive): its intents are
-- rejected, the rest of the window trades.
ALTER TABLE orders ADD COLUMN refused text;
