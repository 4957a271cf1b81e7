-- A refused request whose sender waited for the reply was told the reason (the CLI printed
-- it): `m1 dead-letters list` marks it, apart from messages nobody was told about.
ALTER TABLE dead_letters ADD COLUMN answered boolean NOT NULL DEFAULT false;
