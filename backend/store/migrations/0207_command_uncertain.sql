-- A command result may be "uncertain": kluisd stopped between journaling
-- the command's id and journaling its result, and reports at its restart
-- that it cannot tell whether the command was carried out
-- (controller/wire StatusUncertain).
ALTER TABLE device_commands DROP CONSTRAINT device_commands_status_check;
ALTER TABLE device_commands ADD CONSTRAINT device_commands_status_check
    CHECK (status IN ('pending', 'sent', 'done', 'failed', 'expired', 'duplicate', 'rejected', 'uncertain'));
