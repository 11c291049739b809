-- Status records: the whole status object as sent (body), and the fields the
-- listing, the limits and the retention sweep query, as columns of their own.
CREATE TABLE upload_status (
    id          text PRIMARY KEY,
    owner       text NOT NULL,
    state       text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint NOT NULL DEFAULT 1,
    body        text NOT NULL
);
-- The listing's order is (created_at, id); by owner, or across everyone.
CREATE INDEX upload_status_owner_created ON upload_status (owner, created_at, id);
CREATE INDEX upload_status_created ON upload_status (created_at, id);
-- The retention sweep: ended records, oldest change first.
CREATE INDEX upload_status_state_updated ON upload_status (state, updated_at);

-- The webhook log: one row per line of the file form, in the order written.
CREATE TABLE webhook_log (
    seq        bigserial PRIMARY KEY,
    upload_id  text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('event', 'attempt')),
    event_id   text NOT NULL,
    line       text NOT NULL
);
CREATE INDEX webhook_log_upload ON webhook_log (upload_id, seq);
-- An event's body is kept once, however often it is attempted.
CREATE UNIQUE INDEX webhook_log_one_event ON webhook_log (upload_id, event_id)
    WHERE kind = 'event';
