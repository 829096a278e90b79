-- Layout 7: factory contracts (DESIGN §3 "Factory contracts"), and the source of an
-- epoch. An instance of any earlier layout is brought to layout 6 first.
--
-- `epochs.source`: NULL for the chain's own epochs; for an epoch of a source added to an
-- indexed chain (a compatible config change), the source's key (`<contract>:<hash>`, see
-- `AddedSource::key`). Per (chain, source), finished epochs cover the source's range
-- without gap or overlap; readers read it as `to_jsonb(row)->>'source'`, which an instance
-- of an earlier layout answers with NULL.
--
-- `children`: the addresses a factory contract's factory created, one row per (chain,
-- contract, address), with the log that created it. Written by the writer only, in the
-- transaction that stores the creating block's events and checkpoint; a rollback deletes
-- the children created above the common ancestor in the same transaction as their events.
-- An address created twice (a redeployment) keeps its first creation. Children are part
-- of the index, never of the public config.
CREATE OR REPLACE FUNCTION tidemark.create_children_table_v7(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.children (
        chain_id     bigint NOT NULL,
        contract     text NOT NULL,
        address      bytea NOT NULL CHECK (length(address) = 20),
        block_number bigint NOT NULL CHECK (block_number >= 0),
        block_hash   bytea NOT NULL,
        log_index    integer NOT NULL,
        tx_hash      bytea NOT NULL,
        PRIMARY KEY (chain_id, contract, address)
    )$q$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS children_block ON %I.children (chain_id, block_number)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS children_listing ON %I.children (chain_id, contract, block_number, log_index)', s);
    EXECUTE format('ALTER TABLE %I.epochs ADD COLUMN IF NOT EXISTS source text', s);
END
$fn$;

CREATE OR REPLACE FUNCTION tidemark.ensure_instance_schema_v7(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM tidemark.ensure_instance_schema_v6(s);
    PERFORM tidemark.create_children_table_v7(s);
END
$fn$;
