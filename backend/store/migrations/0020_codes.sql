-- 0020 pickup codes (H5, backend/codes). PINs are stored only as
-- HMAC-SHA256 digests, dates of birth only as HMACs bound to the code; the QR
-- token is never stored (it is signed, the row holds its code id).

-- Per device: the salt of its offline PIN verifiers and the burst lockout.
CREATE TABLE code_devices (
    device_id    text PRIMARY KEY REFERENCES devices(id),
    offline_salt bytea NOT NULL CHECK (length(offline_salt) = 16),
    locked_until timestamptz,
    created_at   timestamptz NOT NULL
);

CREATE TABLE codes (
    id                 bytea PRIMARY KEY CHECK (length(id) = 16),
    document_id        uuid NOT NULL REFERENCES documents(id),
    document_kind      text NOT NULL,
    device_id          text NOT NULL REFERENCES code_devices(device_id),
    compartment_id     bigint NOT NULL REFERENCES compartments(id),
    compartment_number int NOT NULL CHECK (compartment_number >= 1),
    board              int NOT NULL CHECK (board >= 0),
    channel            int NOT NULL CHECK (channel >= 0),
    pin_digest         bytea NOT NULL CHECK (length(pin_digest) = 32),
    needs_dob          boolean NOT NULL,
    dob_digest         bytea CHECK (dob_digest IS NULL OR length(dob_digest) = 32),
    offline_verifier   bytea NOT NULL,
    offline_params     text NOT NULL,
    expires_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL,
    used_at            timestamptz,
    revoked_at         timestamptz,
    locked_at          timestamptz,
    failed_attempts    int NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    CHECK (NOT needs_dob OR dob_digest IS NOT NULL)
);
-- A PIN is unique among the open (unused, unrevoked) codes of its device.
CREATE UNIQUE INDEX codes_open_pin_idx ON codes (device_id, pin_digest)
    WHERE used_at IS NULL AND revoked_at IS NULL;
CREATE INDEX codes_document_idx ON codes (document_id);
CREATE INDEX codes_device_open_idx ON codes (device_id, expires_at)
    WHERE used_at IS NULL AND revoked_at IS NULL;

-- Every verification attempt, without the code itself. counted marks the
-- failures that count against the device's PIN limits.
CREATE TABLE code_attempts (
    id        bigserial PRIMARY KEY,
    device_id text NOT NULL,
    at        timestamptz NOT NULL,
    method    text NOT NULL CHECK (method IN ('pin', 'qr', 'none')),
    reason    text NOT NULL,
    counted   boolean NOT NULL,
    code_id   bytea
);
CREATE INDEX code_attempts_counted_idx ON code_attempts (device_id, at) WHERE counted;
