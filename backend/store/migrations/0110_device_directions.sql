-- 0110 where a citizen finds a device and how to get there, per language
-- (nl, fr, en, de): e.g. {"nl": "In de inkomhal, links van de trap. Dag en
-- nacht open via de zijdeur."}. Shown in the ready, reminder and receipt
-- messages and on the track page; for a missing language the first of nl,
-- fr, en, de that is set is shown.
ALTER TABLE devices ADD COLUMN directions jsonb NOT NULL DEFAULT '{}'::jsonb
    CHECK (jsonb_typeof(directions) = 'object');
