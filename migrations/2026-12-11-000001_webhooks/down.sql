-- The functions only: an instance's webhook tables stay (an earlier build ignores them).
DROP FUNCTION IF EXISTS tidemark.ensure_instance_schema_v6(text);
DROP FUNCTION IF EXISTS tidemark.create_webhook_tables_v6(text);
