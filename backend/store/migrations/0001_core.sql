-- 0001 core schema (H4): sites, devices, compartments, documents,
-- document_transitions. All times are timestamptz and written in UTC.

CREATE TABLE sites (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name       text NOT NULL CHECK (name <> ''),
    time_zone  text NOT NULL DEFAULT 'Europe/Brussels',
    address    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL
);

CREATE TABLE devices (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    site_id    text NOT NULL REFERENCES sites(id),
    kind       text NOT NULL CHECK (kind IN ('locker', 'automaton')),
    name       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL
);
CREATE INDEX devices_site_idx ON devices (site_id);

CREATE TABLE compartments (
    id        bigserial PRIMARY KEY,
    device_id text NOT NULL REFERENCES devices(id),
    number    int  NOT NULL CHECK (number >= 1),
    board     int  NOT NULL DEFAULT 0 CHECK (board >= 0),
    channel   int  NOT NULL CHECK (channel >= 0),
    size      text NOT NULL CHECK (size IN ('S', 'M', 'L')),
    height_cm int  NOT NULL CHECK (height_cm >= 0 AND height_cm <= 300),
    state     text NOT NULL DEFAULT 'free'
              CHECK (state IN ('free', 'reserved', 'loaded', 'out_of_service')),
    UNIQUE (device_id, number),
    UNIQUE (device_id, board, channel)
);
CREATE INDEX compartments_free_idx ON compartments (device_id, state);

CREATE TABLE documents (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind              text NOT NULL
                      CHECK (kind IN ('eid', 'kids_id', 'residence_card', 'passport', 'driving_licence')),
    -- personal data: nulled by the retention purge (purged_at set)
    number            text,
    holder_first_name text,
    holder_last_name  text,
    holder_birth_date date,
    email             text,
    mobile            text,
    -- keyed pseudonym of the document number (hex HMAC-SHA256), kept after purge
    number_pseudonym  text NOT NULL DEFAULT '',
    language          text NOT NULL CHECK (language IN ('nl', 'fr', 'en', 'de')),
    wants_low         boolean NOT NULL DEFAULT false,
    site_id           text NOT NULL REFERENCES sites(id),
    state             text NOT NULL DEFAULT 'registered'
                      CHECK (state IN ('registered', 'reserved', 'loaded', 'notified',
                                       'collected', 'expired', 'retrieved', 'cancelled')),
    device_id         text REFERENCES devices(id),
    compartment_id    bigint REFERENCES compartments(id),
    deadline          timestamptz,
    loaded_at         timestamptz,
    notified_at       timestamptz,
    closed_at         timestamptz, -- when a final state (collected, retrieved, cancelled) was reached
    purged_at         timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    version           int NOT NULL DEFAULT 1
);
-- Never two documents in one compartment: a compartment is held by at most
-- one document in a state that occupies it.
CREATE UNIQUE INDEX documents_one_per_compartment ON documents (compartment_id)
    WHERE state IN ('reserved', 'loaded', 'notified', 'expired');
CREATE INDEX documents_state_idx ON documents (state, id);
CREATE INDEX documents_device_idx ON documents (device_id, id);
CREATE INDEX documents_deadline_idx ON documents (deadline) WHERE state IN ('loaded', 'notified');
CREATE INDEX documents_closed_idx ON documents (closed_at) WHERE purged_at IS NULL;

CREATE TABLE document_transitions (
    id             bigserial PRIMARY KEY,
    document_id    uuid NOT NULL REFERENCES documents(id),
    at             timestamptz NOT NULL,
    action         text NOT NULL,
    from_state     text NOT NULL,
    to_state       text NOT NULL,
    actor          text NOT NULL,
    compartment_id bigint REFERENCES compartments(id),
    note           text NOT NULL DEFAULT ''
);
CREATE INDEX document_transitions_doc_idx ON document_transitions (document_id, id);
