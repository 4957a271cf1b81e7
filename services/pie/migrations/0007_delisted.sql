-- Securities the market delisted (market.security.changed): a pie holding one needs
-- adjustment, and the automated trades leave it out (docs/services/pie.md "Delisted
-- securities"). NULL: listed. status_at orders the announcements (a stale one is ignored).
ALTER TABLE prices
    ADD COLUMN delisted  text,
    ADD COLUMN status_at timestamptz;
