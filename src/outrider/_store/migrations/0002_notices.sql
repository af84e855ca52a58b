-- outrider store, version 2: how far each session has acknowledged its completion notices.
CREATE TABLE notice_cursors (
    session TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL            -- every notice event with seq <= this was acknowledged
) WITHOUT ROWID;
CREATE INDEX events_notices ON events (session, seq)
    WHERE type IN ('task.succeeded', 'task.failed', 'task.cancelled', 'task.timed_out',
                   'group.completed');
