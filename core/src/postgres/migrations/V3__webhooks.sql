-- Per-board webhooks (docs/WEBHOOKS.md). The API (server) writes the rows;
-- the projectors deliver, reading the events from the archive (`events`),
-- so deliveries need nothing from Redis.

CREATE TABLE webhooks (
    id                    uuid        PRIMARY KEY,
    board_id              uuid        NOT NULL,
    url                   text        NOT NULL,
    -- Event types to deliver; NULL: every type.
    events                text[],
    -- The HMAC key. Kept as given: signing needs it.
    secret                text        NOT NULL,
    created_by            uuid        NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    -- The board's version when the webhook was made: only later events
    -- are delivered.
    created_after_version bigint      NOT NULL,
    -- The cursor: every event up to here was delivered (2xx) or filtered out.
    delivered_version     bigint      NOT NULL,
    -- Failed attempts at the event after the cursor, and when the next is due.
    attempts              integer     NOT NULL DEFAULT 0,
    next_attempt_at       timestamptz,
    disabled_at           timestamptz,
    disabled_reason       text,
    -- The projector delivering it, until when; another may take it after.
    lease_owner           text,
    lease_until           timestamptz
);

-- Listing a board's webhooks, and waking those of boards that advanced.
CREATE INDEX webhooks_board ON webhooks (board_id);

-- What the dispatchers scan for backlog: active webhooks only, so boards
-- without webhooks (and disabled ones) cost nothing.
CREATE INDEX webhooks_active ON webhooks (board_id, delivered_version)
    WHERE disabled_at IS NULL;

-- Recent attempts, newest kept (a bounded number per webhook).
CREATE TABLE webhook_deliveries (
    -- The X-Streamboard-Delivery header of the attempt.
    id              uuid        PRIMARY KEY,
    webhook_id      uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    version         bigint      NOT NULL,
    event_type      text        NOT NULL,
    attempt         integer     NOT NULL,
    -- The receiver's status, or NULL with `error` when there was none.
    status_code     integer,
    error           text,
    duration_ms     integer     NOT NULL,
    -- When the event is tried again; NULL after a success or the last try.
    next_attempt_at timestamptz,
    at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (webhook_id, at DESC);
