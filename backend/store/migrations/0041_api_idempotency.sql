-- 0041 idempotency keys for creating POSTs (H6, backend/api). A row is
-- written before the handler runs (status 0 = in progress) and completed
-- with the response afterwards, so a replay returns the same response.

CREATE TABLE api_idempotency (
    user_id      bigint NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_hash bytea NOT NULL,
    status       int NOT NULL DEFAULT 0,
    content_type text NOT NULL DEFAULT '',
    body         bytea,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX api_idempotency_created_idx ON api_idempotency (created_at);
