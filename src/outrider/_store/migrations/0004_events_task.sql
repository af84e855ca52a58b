-- outrider store, version 4: a task's own events are read without scanning its session's.
CREATE INDEX events_task ON events (task_id, seq) WHERE task_id IS NOT NULL;
