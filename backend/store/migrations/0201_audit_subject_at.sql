-- 0201 a device's timeline (backend/web, the device page) lists the
-- newest records about the device and its compartments by when they
-- happened (audit_log.at: a device event's own time), not by when they
-- arrived (seq): after an outage kluisd sends its alarms ahead of its
-- backlog, and the backend's workers and replicas apply one device's
-- events in parallel, so the order of arrival is not the order of the
-- events; a forced-door alarm listed before the door events that led to
-- it, or pushed out of the newest 60 by a drained backlog of older
-- events, misled. One index scan per subject, newest first.
CREATE INDEX audit_log_subject_at_idx ON audit_log (subject, at DESC, seq DESC);
