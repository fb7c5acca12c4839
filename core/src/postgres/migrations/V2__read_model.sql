-- The read model the projector folds from the board streams, the event
-- archive, and the projector's own bookkeeping. Documented for SQL readers
-- in docs/READ_MODEL.md. Every row of boards, board_members and tasks is what
-- the domain fold (`domain::apply`) gives for the events in `events`.

-- One row per board that has a `board.created` event. `version` is the
-- version of the last event folded into it.
CREATE TABLE boards (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL,
    -- The ordered list of columns (task statuses), a JSON array of strings.
    columns    jsonb       NOT NULL,
    version    bigint      NOT NULL,
    -- NULL for quick-win boards, which have no users.
    owner_id   uuid,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    -- Set once the board is deleted; its rows stay for the history.
    deleted_at timestamptz
);

CREATE TABLE board_members (
    board_id uuid NOT NULL,
    user_id  uuid NOT NULL,
    role     text NOT NULL,
    PRIMARY KEY (board_id, user_id)
);

-- "Which boards is this user a member of?"
CREATE INDEX board_members_user ON board_members (user_id);

-- Keyed by board as well as id, so that no event of one board can ever
-- write a row of another.
CREATE TABLE tasks (
    board_id    uuid             NOT NULL,
    id          uuid             NOT NULL,
    title       text             NOT NULL,
    description text             NOT NULL,
    status      text             NOT NULL,
    position    double precision NOT NULL,
    assigned_to text,
    fields      jsonb            NOT NULL,
    created_at  timestamptz      NOT NULL,
    updated_at  timestamptz      NOT NULL,
    created_by  uuid,
    updated_by  uuid,
    PRIMARY KEY (board_id, id)
);

-- A column of a board in display order.
CREATE INDEX tasks_column ON tasks (board_id, status, position);

-- The archive: every event, once. No foreign key to boards: an archive row
-- and the board row it creates are written in the same transaction.
CREATE TABLE events (
    board_id  uuid        NOT NULL,
    version   bigint      NOT NULL,
    type      text        NOT NULL,
    actor     uuid,
    at        timestamptz NOT NULL,
    data      jsonb       NOT NULL,
    -- The Redis Stream entry id (`<version>-0`).
    stream_id text        NOT NULL,
    PRIMARY KEY (board_id, version)
);

-- How far the projector has folded each board. The row is locked (FOR
-- UPDATE) by whichever projector applies a batch of that board, so two
-- projectors never apply the same board at once. `version` is the last
-- version applied or explicitly skipped; `parked_version`, when set, is a
-- poison event that holds the rest of the board back (see dead_letters).
CREATE TABLE projector_progress (
    board_id       uuid        PRIMARY KEY,
    version        bigint      NOT NULL DEFAULT 0,
    parked_version bigint,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Stream entries that could not be decoded or applied. `skipped_at` is set
-- when an operator skipped the entry (`projector replay <board> --skip <v>`):
-- its version then has no row in `events`.
CREATE TABLE dead_letters (
    board_id   uuid        NOT NULL,
    stream_id  text        NOT NULL,
    version    bigint      NOT NULL,
    error      text        NOT NULL,
    -- The raw entry, field by field, as JSON strings.
    fields     jsonb       NOT NULL,
    parked_at  timestamptz NOT NULL DEFAULT now(),
    skipped_at timestamptz,
    PRIMARY KEY (board_id, stream_id)
);
