-- The functions only: an instance's sink tables stay (an earlier build ignores them).
DROP FUNCTION IF EXISTS tidemark.ensure_instance_schema_v5(text);
DROP FUNCTION IF EXISTS tidemark.create_sink_tables_v5(text);
