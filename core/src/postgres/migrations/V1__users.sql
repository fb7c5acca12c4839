-- Accounts. Usernames keep the case they were registered with but are
-- unique regardless of case: the unique index is on lower(username), and
-- lookups use the same expression so they hit it.
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    username      text        NOT NULL,
    -- Argon2id PHC string: algorithm, parameters and salt travel with the hash.
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
