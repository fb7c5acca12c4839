-- Every server instance LISTENs on `streamboard_users_deleted` and forgets
-- a deleted account at once, so its tokens stop working on every instance
-- (src/auth/sessions.rs). The payload is the account's id.
CREATE OR REPLACE FUNCTION streamboard_notify_user_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('streamboard_users_deleted', OLD.id::text);
    RETURN OLD;
END
$$;

CREATE TRIGGER users_deleted_notify
    AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION streamboard_notify_user_deleted();
