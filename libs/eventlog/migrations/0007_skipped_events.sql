-- Events a projector skipped because its build did not know their type or schema version
-- (docs/decisions/0012-unknown-event-types.md): committed with the projector's checkpoint,
-- deleted when a build that knows them folds their stream again. Part of the read side:
-- dropped with it on a rebuild.
CREATE TABLE read.skipped (
    projector      text        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL,
    position       bigint      NOT NULL,
    event_type     text        NOT NULL,
    schema_version int         NOT NULL,
    skipped_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (projector, stream_id, version)
);
