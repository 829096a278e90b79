-- The functions only: an instance's children table stays (an earlier build ignores it).
DROP FUNCTION IF EXISTS tidemark.ensure_instance_schema_v7(text);
DROP FUNCTION IF EXISTS tidemark.create_children_table_v7(text);
