-- Per-instance tables, layout version 3: the indexes that let an events page read the
-- rows of its chain or its contract in cursor order (`(chain_id, cursor)`,
-- `(contract, cursor)`), so that a filter whose rows come late in cursor order (a chain
-- or a contract added to an instance later) never walks the primary key past the rows
-- before them (db-client/src/events/shape.rs).
--
-- Creates a v3 instance, or upgrades a v1 or v2 instance in place. On an existing table
-- each index is built once, while writes to it wait (reads go on).
CREATE OR REPLACE FUNCTION tidemark.ensure_instance_schema_v3(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM tidemark.ensure_instance_schema_v2(s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_chain_cursor ON %I.events (chain_id, cursor)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_contract_cursor ON %I.events (contract, cursor)', s);
END
$fn$;
