-- Layout 6: provider webhook ingestion (DESIGN §8 "Webhook ingestion"). Layout 5's tables
-- are unchanged; an instance of any earlier layout is brought to layout 5 first.
--
-- * `webhook_deliveries`: every valid delivery, recorded before its 2xx, unique by the
--   provider's delivery id (a repeated id inserts nothing). The one table of an instance
--   that any indexer process writes (insert-only; a standby records what arrives while
--   the writer is down); only the writer marks a row processed. A row holds the block it
--   announces, never its logs: what is stored always comes from the RPC.
-- * `pending_blocks`: blocks announced ahead of the checkpoint (or with a hash the chain
--   has not confirmed), parked until the follower stores that very block (released) or
--   until `pending_ttl_ms` (expired). Written by the writer only.
CREATE OR REPLACE FUNCTION tidemark.create_webhook_tables_v6(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.webhook_deliveries (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        provider     text NOT NULL,
        chain_id     bigint NOT NULL,
        delivery_id  text NOT NULL,
        block_number bigint NOT NULL CHECK (block_number >= 0),
        block_hash   text NOT NULL,
        parent_hash  text,
        sequence     numeric,
        log_count    integer NOT NULL DEFAULT 0,
        received_at  timestamptz NOT NULL DEFAULT now(),
        processed_at timestamptz,
        outcome      text,
        UNIQUE (provider, chain_id, delivery_id)
    )$q$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS webhook_deliveries_unprocessed ON %I.webhook_deliveries (id) WHERE processed_at IS NULL', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS webhook_deliveries_processed ON %I.webhook_deliveries (received_at) WHERE processed_at IS NOT NULL', s);
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.pending_blocks (
        chain_id    bigint NOT NULL,
        number      bigint NOT NULL,
        hash        text NOT NULL,
        delivery_id text NOT NULL,
        sequence    numeric,
        received_at timestamptz NOT NULL,
        parked_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (chain_id, number, hash)
    )$q$, s);
END
$fn$;

CREATE OR REPLACE FUNCTION tidemark.ensure_instance_schema_v6(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM tidemark.ensure_instance_schema_v5(s);
    PERFORM tidemark.create_webhook_tables_v6(s);
END
$fn$;
