-- Flow analytics for SQL readers (docs/READ_MODEL.md, docs/ANALYTICS.md):
-- every task's moves between columns, written by the projector in the same
-- transaction as the archive rows of its events, and views over them for
-- the daily cumulative flow and per-task cycle times.

-- One row per event that moved a task between columns: created (from NULL),
-- moved to another column, deleted (to NULL). A move within a column is
-- none. `at` and `actor` are the event's; `version` is the event's version.
-- The rule is domain::flow::transition.
CREATE TABLE task_transitions (
    board_id    uuid        NOT NULL,
    version     bigint      NOT NULL,
    task_id     uuid        NOT NULL,
    from_column text,
    to_column   text,
    at          timestamptz NOT NULL,
    actor       uuid,
    PRIMARY KEY (board_id, version)
);

-- One task's path, in order.
CREATE INDEX task_transitions_task ON task_transitions (board_id, task_id, version);

-- The same rule over the archive, in SQL: what task_transitions holds for
-- the archived events. Fills the table below for events archived before
-- this migration, and lets a reader check the table against the archive.
CREATE VIEW task_transitions_from_archive AS
WITH task_events AS (
    SELECT board_id, version, type, at, actor, (data->>'task_id')::uuid AS task_id,
           CASE type
               WHEN 'task.created' THEN data->>'status'
               WHEN 'task.moved' THEN data->'to'->>'status'
           END AS status_after
    FROM events
    WHERE type IN ('task.created', 'task.moved', 'task.deleted')
), placed AS (
    SELECT *, lag(status_after) OVER (PARTITION BY board_id, task_id ORDER BY version)
                  AS status_before
    FROM task_events
)
SELECT board_id, version, task_id, status_before AS from_column, status_after AS to_column,
       at, actor
FROM placed
WHERE (type = 'task.created')
   OR (type = 'task.moved' AND status_before IS DISTINCT FROM status_after)
   OR (type = 'task.deleted' AND status_before IS NOT NULL);

INSERT INTO task_transitions (board_id, version, task_id, from_column, to_column, at, actor)
SELECT board_id, version, task_id, from_column, to_column, at, actor
FROM task_transitions_from_archive
ON CONFLICT DO NOTHING;

-- Per task: when it was created, started (first in a column other than the
-- board's first), finished (its last entry into the board's last column,
-- if it is still there or was deleted from there), and the lead and cycle
-- times in seconds. Columns are the board's current ones, read from the
-- archive (not from `boards`, which `projector rebuild` swaps for a new
-- table). Times are made non-decreasing along each board's transitions, as
-- the API does along its events (the two differ only if server clocks
-- disagreed).
CREATE VIEW task_cycle_times AS
WITH board_columns AS (
    SELECT DISTINCT ON (board_id) board_id, data->'columns' AS columns
    FROM events
    WHERE type IN ('board.created', 'board.updated') AND data->'columns' IS NOT NULL
    ORDER BY board_id, version DESC
), timed AS (
    SELECT t.*, max(t.at) OVER (PARTITION BY t.board_id ORDER BY t.version) AS effective_at
    FROM task_transitions t
), per_task AS (
    SELECT t.board_id, t.task_id,
           min(t.effective_at) FILTER (WHERE t.from_column IS NULL) AS created_at,
           min(t.effective_at) FILTER (WHERE t.to_column IS NOT NULL
                                         AND t.to_column IS DISTINCT FROM b.columns->>0)
               AS started_at,
           max(t.effective_at) FILTER (WHERE t.to_column = b.columns->>(jsonb_array_length(b.columns) - 1))
               AS entered_last_at,
           (array_agg(t.to_column ORDER BY t.version DESC))[1] AS current_column,
           (array_agg(t.from_column ORDER BY t.version DESC))[1] AS left_from,
           b.columns->>(jsonb_array_length(b.columns) - 1) AS last_column
    FROM timed t
    JOIN board_columns b ON b.board_id = t.board_id
    GROUP BY t.board_id, t.task_id, b.columns
), judged AS (
    SELECT *, current_column IS NULL AS deleted,
           CASE WHEN current_column = last_column
                  OR (current_column IS NULL AND left_from = last_column)
                THEN entered_last_at END AS finished_at
    FROM per_task
)
SELECT board_id, task_id, current_column AS status, deleted, created_at,
       CASE WHEN finished_at IS NULL THEN started_at
            ELSE least(coalesce(started_at, finished_at), finished_at) END AS started_at,
       finished_at,
       extract(epoch FROM finished_at - created_at)::float8 AS lead_time_seconds,
       extract(epoch FROM finished_at - least(coalesce(started_at, finished_at), finished_at))::float8
           AS cycle_time_seconds
FROM judged;

-- Tasks in each column at the end of each UTC day (today: now), from the
-- board's first transition on. A column with no task that day has no row.
CREATE VIEW daily_cumulative_flow AS
WITH timed AS (
    SELECT t.*, max(t.at) OVER (PARTITION BY t.board_id ORDER BY t.version) AS effective_at
    FROM task_transitions t
), stays AS (
    SELECT board_id, to_column AS column_name, effective_at AS since,
           lead(effective_at) OVER (PARTITION BY board_id, task_id ORDER BY version) AS until
    FROM timed
), days AS (
    SELECT board_id, day::date AS day
    FROM (SELECT board_id, min(at) AS first_at FROM task_transitions GROUP BY board_id) f,
         generate_series(date_trunc('day', f.first_at AT TIME ZONE 'UTC'),
                         date_trunc('day', now() AT TIME ZONE 'UTC'),
                         interval '1 day') AS day
)
SELECT d.board_id, d.day, s.column_name, count(*)::bigint AS tasks
FROM days d
JOIN stays s ON s.board_id = d.board_id
            AND s.column_name IS NOT NULL
            AND s.since < ((d.day + 1)::timestamp AT TIME ZONE 'UTC')
            AND (s.until IS NULL OR s.until >= ((d.day + 1)::timestamp AT TIME ZONE 'UTC'))
GROUP BY d.board_id, d.day, s.column_name;
