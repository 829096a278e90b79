DROP FUNCTION IF EXISTS tidemark.ensure_instance_schema_v3(text);
