-- outrider store, version 6: the node of a cluster each attempt ran on (NULL: this machine).
ALTER TABLE tasks ADD COLUMN node TEXT;
ALTER TABLE attempts ADD COLUMN node TEXT;
