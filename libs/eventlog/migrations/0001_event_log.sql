-- The write side: the append-only log, its outbox, and the rows that change atomically
-- with an append (unique claims, secret slots, idempotency records).

CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version > 0),
    event_id       uuid        NOT NULL UNIQUE,
    event_type     text        NOT NULL,
    schema_version int         NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL,
    -- The optimistic-concurrency guard: two writers cannot both append version N.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

-- One row per event still to be published (published_at IS NULL) or already published.
CREATE TABLE outbox (
    position     bigint PRIMARY KEY REFERENCES events (position),
    published_at timestamptz NULL
);
CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;

-- Wake the relay when an outbox row commits. NOTIFY is transactional: the relay hears
-- it only once the appending transaction has committed (and not at all on rollback).
CREATE FUNCTION gatehouse_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatehouse_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_outbox();

CREATE TABLE unique_claims (
    scope     text NOT NULL,
    value     text NOT NULL,
    stream_id text NOT NULL,
    PRIMARY KEY (scope, value)
);

CREATE TABLE secret_slots (
    stream_id text  NOT NULL,
    name      text  NOT NULL,
    value     bytea NOT NULL,
    PRIMARY KEY (stream_id, name)
);

CREATE TABLE idempotency (
    key         text PRIMARY KEY,
    fingerprint text        NOT NULL,
    response    jsonb       NOT NULL,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL,
    position    bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
