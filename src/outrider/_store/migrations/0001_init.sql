-- outrider store, version 1. Timestamps are UTC epoch seconds (REAL).
CREATE TABLE tasks (
    seq           INTEGER PRIMARY KEY,          -- submission order; FIFO within a priority
    task_id       TEXT NOT NULL UNIQUE,
    session       TEXT NOT NULL,
    grp           TEXT,
    parent        TEXT,
    label         TEXT,
    description   TEXT,
    kind          TEXT NOT NULL,
    spec          TEXT NOT NULL,                -- JSON
    priority      INTEGER NOT NULL,
    keys          TEXT NOT NULL,                -- JSON array
    depends_on    TEXT NOT NULL DEFAULT '[]',   -- JSON array
    timeout       REAL,
    ttl           REAL,
    stall_timeout REAL,
    max_attempts  INTEGER NOT NULL,
    state         TEXT NOT NULL,
    attempt       INTEGER NOT NULL DEFAULT 0,
    ready_at      REAL,                         -- not before (a retry's backoff)
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    result        TEXT,                         -- JSON
    error         TEXT,                         -- JSON {type, message, detail}
    exit_code     INTEGER,
    progress      TEXT,                         -- JSON
    usage         TEXT,                         -- JSON
    pid           INTEGER,                      -- the running attempt's process, if any
    pid_created   REAL                          -- its start time, so a reused pid is never killed
);
CREATE INDEX tasks_dispatch ON tasks (state, priority DESC, seq);
CREATE INDEX tasks_session ON tasks (session, seq);
CREATE INDEX tasks_group ON tasks (session, grp);
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE attempts (
    task_id     TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    state       TEXT,
    error       TEXT,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID;

CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so readers resume by seq
    at       REAL NOT NULL,
    type     TEXT NOT NULL,
    session  TEXT NOT NULL,
    task_id  TEXT,
    grp      TEXT,
    data     TEXT NOT NULL                       -- JSON object
);
CREATE INDEX events_session ON events (session, seq);
CREATE INDEX events_at ON events (at);
