-- When a thing (an API key) was last used. Uses are traffic, not decisions: they are not
-- events, so this is not derived from the log and survives read-model rebuilds. Writers
-- record at most about one use per minute per thing.

CREATE TABLE IF NOT EXISTS last_used (
    kind text        NOT NULL,
    id   uuid        NOT NULL,
    at   timestamptz NOT NULL,
    PRIMARY KEY (kind, id)
);
