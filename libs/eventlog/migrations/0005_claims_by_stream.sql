-- UniqueClaim::ReleaseAll deletes a stream's claims in one scope without knowing their
-- values: find them by stream.
CREATE INDEX unique_claims_by_stream ON unique_claims (stream_id, scope);
