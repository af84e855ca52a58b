-- outrider store, version 4: the git worktrees writing tasks run in, one per task.
CREATE TABLE worktrees (
    task_id    TEXT PRIMARY KEY,
    session    TEXT NOT NULL,
    repo       TEXT NOT NULL,
    state      TEXT NOT NULL,           -- active | kept | merged | discarded | removed
    updated_at REAL NOT NULL,
    record     TEXT NOT NULL            -- the Worktree as JSON
) WITHOUT ROWID;
CREATE INDEX worktrees_by_repo ON worktrees (repo, state);
