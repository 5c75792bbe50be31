-- 0101 staff lift a device's PIN lockout (issue 10, backend/codes
-- ClearBurstLock): the failures before the lift no longer count towards the
-- next burst lockout (they still count towards the daily cap), so the first
-- mistyped PIN after the lift does not lock the device again at once.
ALTER TABLE code_devices ADD COLUMN burst_cleared_at timestamptz;
