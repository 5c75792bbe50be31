-- 0112 the notification outbox (backend/notify). A document transition
-- that tells the holder something inserts one row here in its own
-- transaction, so the notification commits or rolls back with the state
-- change; the outbox sender (notify.Outbox, on every replica) claims due
-- rows with FOR UPDATE SKIP LOCKED, sends, records the attempts in
-- notifications and deletes the row in the same transaction, or keeps it
-- for a retry with back-off. No message text or recipient is stored; the
-- codes of a ready message (PIN, QR token) only sealed with AES-256-GCM
-- under a key derived from the backend's keys (docs/security.md).

CREATE TABLE notify_outbox (
    id            bigserial PRIMARY KEY,
    document_id   uuid NOT NULL REFERENCES documents(id),
    -- a service.Notify* kind: loaded, reissued, reminder, collected, expired
    kind          text NOT NULL CHECK (kind <> ''),
    -- the compartment number the message names (0: none)
    compartment   int NOT NULL DEFAULT 0 CHECK (compartment >= 0),
    -- version byte, 12-byte nonce, AES-GCM ciphertext of the codes; only
    -- while a ready message is pending
    sealed        bytea,
    -- channels (email, sms, slip) that already reached the holder
    channels_done text[] NOT NULL DEFAULT '{}',
    attempts      int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- pending: to send at next_at; gave_up: every attempt failed (kept for
    -- staff, without its secret, until the retention purge)
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'gave_up')),
    next_at       timestamptz NOT NULL,
    last_error    text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    CHECK (state = 'pending' OR sealed IS NULL)
);
CREATE INDEX notify_outbox_due_idx ON notify_outbox (next_at, id) WHERE state = 'pending';
CREATE INDEX notify_outbox_document_idx ON notify_outbox (document_id);

-- A document that leaves loaded/notified (collected, expired, retrieved,
-- cancelled) makes its codes worthless: forget the sealed codes of its
-- pending ready messages in the same transaction (the sender then drops
-- those messages instead of sending codes that no longer open anything).
CREATE FUNCTION notify_outbox_forget_codes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE notify_outbox SET sealed = NULL WHERE document_id = NEW.id AND sealed IS NOT NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER notify_outbox_forget_codes AFTER UPDATE OF state ON documents
    FOR EACH ROW WHEN (NEW.state NOT IN ('loaded', 'notified') AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION notify_outbox_forget_codes();
