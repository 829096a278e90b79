-- Per-instance tables, layout version 2: a log that does not fit its ABI is stored with
-- `args` null and the reason in `decode_error` (DESIGN §3, §9.8).
--
-- Creates a v2 instance, or upgrades a v1 instance in place: version 1's function makes
-- every missing table (a no-op on an existing instance), then the v2 changes are applied
-- idempotently. Readers that select `decode_error` from a v1 instance find it once the
-- indexer of this version has started on it.
CREATE OR REPLACE FUNCTION tidemark.ensure_instance_schema_v2(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM tidemark.ensure_instance_schema_v1(s);
    EXECUTE format('ALTER TABLE %I.events ADD COLUMN IF NOT EXISTS decode_error text', s);
    EXECUTE format('ALTER TABLE %I.events ALTER COLUMN args DROP NOT NULL', s);
END
$fn$;
