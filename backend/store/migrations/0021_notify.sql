-- 0021 notifications (H5, backend/notify). No message text, PIN, token or
-- recipient address is stored: only what was sent, how, and whether it worked.

-- The public tracking id of a document (random, unguessable, not the
-- document id) for the citizen's track page /t/{tracking_id}.
CREATE TABLE notify_tracking (
    document_id uuid PRIMARY KEY REFERENCES documents(id),
    tracking_id text NOT NULL UNIQUE CHECK (tracking_id ~ '^[A-Za-z0-9_-]{22}$'),
    created_at  timestamptz NOT NULL
);

CREATE TABLE notifications (
    id          bigserial PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES documents(id),
    kind        text NOT NULL CHECK (kind <> ''),
    channel     text NOT NULL CHECK (channel IN ('email', 'sms', 'slip')),
    status      text NOT NULL CHECK (status IN ('sent', 'failed', 'needed')),
    error       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL
);
CREATE INDEX notifications_document_idx ON notifications (document_id, id);
CREATE INDEX notifications_slip_idx ON notifications (created_at) WHERE channel = 'slip' AND status = 'needed';
