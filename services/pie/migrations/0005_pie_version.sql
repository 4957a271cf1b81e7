-- Each change of an account's pie bumps its version; `pie.pie.changed` carries it, so a
-- consumer that handles two changes out of order keeps the newer tree.
ALTER TABLE pies ADD COLUMN version bigint NOT NULL DEFAULT 1;
