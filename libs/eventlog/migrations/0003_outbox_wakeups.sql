-- Appends wake the relay only when it is asleep.
--
-- A transaction that has sent a NOTIFY takes a database-wide lock at commit and holds it
-- until its commit record is on disk, so appends that all NOTIFY commit one disk flush at
-- a time instead of sharing flushes (measured with 16 writers: ~4,200 appends/s with a
-- NOTIFY each, ~6,300 without). While the relay is busy it looks for new rows by itself;
-- it needs a wake-up only once it has found nothing and goes to sleep.
--
-- The handshake, with advisory lock 7449363237790903141 ("gatewake"):
-- - every append takes it SHARED (until its commit), then reads `sleeping` and notifies
--   only when it is true;
-- - the relay, before sleeping, takes it EXCLUSIVE while it sets `sleeping`, which waits
--   for every append already past its read to commit, and then looks once more.
-- So an append either sees `sleeping` and notifies, or the relay's last look sees its rows.

CREATE TABLE outbox_relay (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- True until a relay says it is working: with no relay, appends keep notifying.
    sleeping  boolean NOT NULL
);
INSERT INTO outbox_relay (singleton, sleeping) VALUES (true, true);

CREATE OR REPLACE FUNCTION gatehouse_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7449363237790903141);
    -- A fresh snapshot (this function is volatile): sees a `sleeping` committed while we
    -- waited for the lock.
    IF (SELECT sleeping FROM outbox_relay) THEN
        PERFORM pg_notify('gatehouse_outbox', '');
    END IF;
    RETURN NULL;
END;
$$;

-- Called by the relay: `true` before its last look, `false` when it wakes up.
CREATE FUNCTION gatehouse_outbox_relay_sleeping(asleep boolean) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF asleep THEN
        PERFORM pg_advisory_xact_lock(7449363237790903141);
    END IF;
    UPDATE outbox_relay SET sleeping = asleep;
END;
$$;
