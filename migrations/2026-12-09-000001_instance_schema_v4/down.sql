-- The functions only: an instance already rewritten in layout 4 stays so (its data
-- cannot be read by an earlier build; restore a backup to go back).
DROP FUNCTION IF EXISTS tidemark.ensure_instance_schema_v4(text);
DROP FUNCTION IF EXISTS tidemark.convert_events_v4(text);
DROP FUNCTION IF EXISTS tidemark.create_event_tables_v4(text);
DROP FUNCTION IF EXISTS tidemark.event_json(bigint, bigint, bigint, bytea, bigint, bytea, integer, integer, bytea,
    text, text, text, bytea, bytea, bytea, bytea, bytea, jsonb, text);
