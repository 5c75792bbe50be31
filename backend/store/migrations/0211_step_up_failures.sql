-- Step-up failures (backend/auth stepup.go): a wrong current password
-- given to make an API token, set one's own staff PIN or change one's own
-- password is counted on the session (API token or console session) it
-- came with, not against the user's login limits, so that someone holding
-- a stolen session cannot lock the real user out; the third ends that
-- session.
ALTER TABLE auth_tokens ADD COLUMN step_up_failures integer NOT NULL DEFAULT 0;
ALTER TABLE auth_web_sessions ADD COLUMN step_up_failures integer NOT NULL DEFAULT 0;
