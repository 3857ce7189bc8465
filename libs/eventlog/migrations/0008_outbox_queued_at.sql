-- When each outbox row was queued: inside its append's transaction, just before the
-- commit. With `published_at` it splits the relay's latency from the append's own
-- (`gateway_bench`, `docs/benchmarks.md`).
ALTER TABLE outbox ADD COLUMN queued_at timestamptz NOT NULL DEFAULT clock_timestamp();
