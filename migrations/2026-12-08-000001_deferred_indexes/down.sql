-- Back to the functions of migrations 1 and 3, which always build every index.
CREATE OR REPLACE FUNCTION tidemark.ensure_instance_schema_v1(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF s !~ '^[a-z_][a-z0-9_]{0,62}$' OR s LIKE 'pg\_%' OR s IN ('public', 'tidemark', 'information_schema') THEN
        RAISE EXCEPTION 'invalid instance schema name: %', s;
    END IF;
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', s);

    -- One sequence for every journal entry (events and removals): cursor order is commit
    -- order because committers take a transaction-level advisory lock before drawing.
    EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I.cursor_seq', s);

    -- Canonical logs. A row is the journal's `log` entry for that log.
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.events (
        cursor          bigint  PRIMARY KEY,
        chain_id        bigint  NOT NULL,
        block_number    bigint  NOT NULL,
        block_hash      text    NOT NULL,
        block_timestamp bigint  NOT NULL,
        tx_hash         text    NOT NULL,
        tx_index        integer NOT NULL,
        log_index       integer NOT NULL,
        address         text    NOT NULL,
        contract        text    NOT NULL,
        event           text    NOT NULL,
        signature       text    NOT NULL,
        topics          text[]  NOT NULL,
        data            text    NOT NULL,
        args            jsonb   NOT NULL,
        UNIQUE (chain_id, block_hash, log_index)
    )$q$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_chain_block ON %I.events (chain_id, block_number)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_contract_event ON %I.events (contract, event, cursor)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_address ON %I.events (address, cursor)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_tx ON %I.events (tx_hash)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_topic1 ON %I.events ((topics[2]), cursor)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_topic2 ON %I.events ((topics[3]), cursor)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_topic3 ON %I.events ((topics[4]), cursor)', s);

    -- Logs removed by reorgs: the journal's `removed` entries, with the removed row.
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.removals (
        cursor       bigint      PRIMARY KEY,
        chain_id     bigint      NOT NULL,
        block_number bigint      NOT NULL,
        block_hash   text        NOT NULL,
        log_index    integer     NOT NULL,
        event_cursor bigint      NOT NULL,
        payload      jsonb       NOT NULL,
        removed_at   timestamptz NOT NULL DEFAULT now()
    )$q$, s);

    -- The change log streams and sinks read. Replaying it in cursor order (add on `log`,
    -- delete on `removed`) yields exactly the stored events; no event is written twice.
    EXECUTE format($q$CREATE OR REPLACE VIEW %1$I.journal AS
        SELECT e.cursor, 'log'::text AS kind, e.chain_id, e.block_number, e.block_hash, e.log_index,
               e.cursor AS event_cursor, to_jsonb(e) AS payload
          FROM %1$I.events e
        UNION ALL
        SELECT r.cursor, 'removed'::text, r.chain_id, r.block_number, r.block_hash, r.log_index,
               r.event_cursor, r.payload
          FROM %1$I.removals r$q$, s);

    -- Hashes of the unfinalized window per chain, for reorg detection.
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.blocks (
        chain_id    bigint NOT NULL,
        number      bigint NOT NULL,
        hash        text   NOT NULL,
        parent_hash text   NOT NULL,
        timestamp   bigint NOT NULL,
        PRIMARY KEY (chain_id, number)
    )$q$, s);

    -- Last indexed block per chain, written in the same transaction as its data.
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.checkpoints (
        chain_id        bigint      PRIMARY KEY,
        block_number    bigint      NOT NULL,
        block_hash      text        NOT NULL,
        block_timestamp bigint      NOT NULL,
        updated_at      timestamptz NOT NULL DEFAULT now()
    )$q$, s);

    -- Per-batch processing stages (DESIGN §8).
    EXECUTE format($q$CREATE TABLE IF NOT EXISTS %I.epochs (
        chain_id   bigint      NOT NULL,
        epoch_id   bigint      NOT NULL,
        from_block bigint      NOT NULL,
        to_block   bigint      NOT NULL,
        stage      text        NOT NULL,
        stages     jsonb       NOT NULL DEFAULT '[]',
        error      text,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (chain_id, epoch_id)
    )$q$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS epochs_stage ON %I.epochs (chain_id, stage)', s);
END
$fn$;

CREATE OR REPLACE FUNCTION tidemark.ensure_instance_schema_v3(s text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM tidemark.ensure_instance_schema_v2(s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_chain_cursor ON %I.events (chain_id, cursor)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS events_contract_cursor ON %I.events (contract, cursor)', s);
END
$fn$;

DROP FUNCTION IF EXISTS tidemark.indexes_deferred(text);
