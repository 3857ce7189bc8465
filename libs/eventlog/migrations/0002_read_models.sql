-- The read side: JSON documents folded from the log, the stream versions they reflect,
-- and the projectors' feed checkpoints. Everything here can be dropped and rebuilt.

CREATE SCHEMA IF NOT EXISTS read;

CREATE TABLE read.views (
    kind             text        NOT NULL,
    id               uuid        NOT NULL,
    version          bigint      NOT NULL,
    doc              jsonb       NOT NULL,
    -- The position of the stream's first event: the listing order.
    created_position bigint      NOT NULL,
    projected_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, id)
);
CREATE INDEX views_doc ON read.views USING gin (doc jsonb_path_ops);
CREATE INDEX views_listing ON read.views (kind, created_position, id);

CREATE TABLE read.applied (
    stream_id  text PRIMARY KEY,
    version    bigint      NOT NULL,
    position   bigint      NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE read.checkpoints (
    projector  text PRIMARY KEY,
    sequence   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
