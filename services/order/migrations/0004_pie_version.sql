-- The version of the pie this projection holds (`pie.pie.changed`): an older change
-- handled after a newer one is ignored. 0: set by an event without a version.
ALTER TABLE pies ADD COLUMN version bigint NOT NULL DEFAULT 0;
