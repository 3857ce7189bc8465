-- An idempotency outcome may be kept for a bounded time (an API key's sealed answer is
-- kept 24 h): from expires_at on it is unusable, its key may be taken again, and a sweep
-- deletes it. NULL: kept for good (every row written before this migration).
ALTER TABLE idempotency ADD COLUMN expires_at timestamptz NULL;
CREATE INDEX idempotency_expiry ON idempotency (expires_at) WHERE expires_at IS NOT NULL;
