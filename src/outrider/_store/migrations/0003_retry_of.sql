-- outrider store, version 3: a task submitted again names the ended task it repeats.
ALTER TABLE tasks ADD COLUMN retry_of TEXT;
