DROP FUNCTION IF EXISTS tidemark.ensure_instance_schema_v1(text);
DROP TABLE IF EXISTS tidemark.metadata;
DROP SCHEMA IF EXISTS tidemark;
